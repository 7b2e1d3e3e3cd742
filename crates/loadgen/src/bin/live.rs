//! `trellis-live-latency`: how long a live event takes to reach a subscriber.
//!
//! One graphql-ws socket subscribes to `runsUpdated(workflowId:)`; then, one after
//! another, `startRun` is POSTed over one persistent HTTP connection and the time until
//! the new run's first event arrives on the socket is measured, from just before the
//! request is sent and from its response (the commit). The same socket delivers every
//! event, so what Nagle's algorithm would delay (a small write on a socket that just
//! wrote) is measured too. Prints one JSON object with nearest-rank percentiles in ms.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{header, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug)]
#[command(about = "Latency of live run events over graphql-ws")]
struct Args {
    /// The server, as `http://host:port`.
    #[arg(long)]
    url: String,
    /// An access token acting in the tenant (or an API key that may start runs).
    #[arg(long)]
    token: String,
    /// The active workflow whose runs are started and watched (`wf_…`).
    #[arg(long)]
    workflow: String,
    /// Measured events.
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Unmeasured events first.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
}

const START: &str =
    "mutation($w: ID!) { startRun(input: {workflowId: $w}) { run { id } userErrors { message } } }";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let Some(authority) = args.url.strip_prefix("http://") else {
        bail!("--url must be http://host:port");
    };
    let authority = authority.trim_end_matches('/').to_owned();

    let mut request = format!("ws://{authority}/graphql/ws").into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .context("connecting to /graphql/ws")?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", args.token) } });
    socket.send(Message::text(init.to_string())).await?;
    let ack = next_message(&mut socket).await?;
    if ack["type"] != "connection_ack" {
        bail!("no connection_ack: {ack}");
    }
    let subscribe = json!({
        "id": "1",
        "type": "subscribe",
        "payload": {
            "query": "subscription($w: ID) { runsUpdated(workflowId: $w) { id status } }",
            "variables": { "w": args.workflow },
        },
    });
    socket.send(Message::text(subscribe.to_string())).await?;
    // The subscription is registered once the server has read the message; a short
    // pause keeps the first measured event from racing it.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stream = TcpStream::connect(&authority).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let body = json!({ "query": START, "variables": { "w": args.workflow } }).to_string();

    let mut from_request = Vec::with_capacity(args.count);
    let mut from_commit = Vec::with_capacity(args.count);
    let mut requests = Vec::with_capacity(args.count);
    for i in 0..args.warmup + args.count {
        let sent = Instant::now();
        let response = sender
            .send_request(
                Request::post("/graphql")
                    .header(header::HOST, &authority)
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::AUTHORIZATION, format!("Bearer {}", args.token))
                    .body(Full::new(bytes::Bytes::from(body.clone())))?,
            )
            .await?;
        let bytes = response.into_body().collect().await?.to_bytes();
        let answered = Instant::now();
        let data: Value = serde_json::from_slice(&bytes)?;
        let Some(run) = data["data"]["startRun"]["run"]["id"].as_str() else {
            bail!("startRun failed: {data}");
        };
        // Events of earlier runs (their later moves) may come first: skip them.
        let arrived = loop {
            let message = tokio::time::timeout(Duration::from_secs(10), next_message(&mut socket))
                .await
                .context("no event within 10 s")??;
            match message["type"].as_str() {
                Some("next") if message["payload"]["data"]["runsUpdated"]["id"] == run => {
                    break Instant::now();
                }
                Some("next") | Some("ping") | Some("pong") => {}
                _ => bail!("unexpected message: {message}"),
            }
        };
        if i >= args.warmup {
            from_request.push(arrived - sent);
            // The event may overtake the HTTP response: then it counts as 0 after commit.
            from_commit.push(arrived.saturating_duration_since(answered));
            requests.push(answered - sent);
        }
    }
    let report = json!({
        "events": args.count,
        "event_after_request_ms": percentiles(&mut from_request),
        "event_after_response_ms": percentiles(&mut from_commit),
        "start_run_ms": percentiles(&mut requests),
    });
    writeln!(std::io::stdout().lock(), "{report}")?;
    Ok(())
}

async fn next_message<S>(socket: &mut S) -> anyhow::Result<Value>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match socket.next().await.context("the socket closed")?? {
            Message::Text(text) => return Ok(serde_json::from_str(&text)?),
            Message::Close(frame) => bail!("the server closed the socket: {frame:?}"),
            _ => {}
        }
    }
}

/// p50, p90, p99 and max by nearest rank, in milliseconds.
fn percentiles(samples: &mut [Duration]) -> Value {
    samples.sort_unstable();
    let at = |p: f64| {
        let rank = ((p / 100.0) * samples.len() as f64).ceil().max(1.0) as usize;
        samples[rank.min(samples.len()) - 1].as_secs_f64() * 1000.0
    };
    let round = |ms: f64| (ms * 1000.0).round() / 1000.0;
    json!({
        "p50": round(at(50.0)),
        "p90": round(at(90.0)),
        "p99": round(at(99.0)),
        "max": round(at(100.0)),
    })
}
