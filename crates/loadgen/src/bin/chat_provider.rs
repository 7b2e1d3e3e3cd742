//! `trellis-chat-provider`: a model provider that answers at once, for the processes
//! part of `just bench` (bench/README.md, "Processes").
//!
//! It speaks OpenAI's chat-completions wire format on 127.0.0.1: every
//! `POST /v1/chat/completions` gets the same completion (`--content`) with a fixed
//! usage, as soon as its body has been read, so that what a process call costs beyond
//! the provider can be measured. Besides:
//! - `GET /last-body`: the last completion request's body, byte for byte (the bench
//!   sends the same body straight to this server, to time the provider alone);
//! - `GET /stats`: `{"requests": n, "handling_us": total}`, the completion requests
//!   served and the time spent handling them (from the parsed head to the answer).
//!
//! It prints `listening http://127.0.0.1:PORT` once it accepts connections, serves
//! HTTP/1.1 with keep-alive on one thread, and exits when stdin ends, so it never
//! outlives the script that started it.

use std::io::{BufRead, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(about = "A chat-completions provider that answers at once")]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The content of every completion.
    #[arg(long, default_value = "ok")]
    content: String,
    /// The usage every completion reports: prompt tokens.
    #[arg(long, default_value_t = 12)]
    prompt_tokens: u64,
    /// The usage every completion reports: completion tokens.
    #[arg(long, default_value_t = 1)]
    completion_tokens: u64,
}

#[derive(Default)]
struct Shared {
    completion: Bytes,
    last_body: Mutex<Bytes>,
    requests: AtomicU64,
    handling_us: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Stdin ending (the bench script exited, however it exited) ends this process.
    std::thread::spawn(|| {
        let mut sink = String::new();
        while std::io::stdin()
            .lock()
            .read_line(&mut sink)
            .is_ok_and(|n| n > 0)
        {
            sink.clear();
        }
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let completion = serde_json::json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": args.content },
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": args.prompt_tokens,
            "completion_tokens": args.completion_tokens,
            "total_tokens": args.prompt_tokens + args.completion_tokens,
        },
    });
    let shared = Arc::new(Shared {
        completion: Bytes::from(completion.to_string()),
        ..Shared::default()
    });
    let listener = TcpListener::bind(args.listen).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening http://{}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(shared.clone(), request));
            // A client that goes away mid-request is not this server's problem.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let started = Instant::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let body = request.into_body().collect().await?.to_bytes();
    let response = match (method, path.as_str()) {
        (Method::POST, "/v1/chat/completions") => {
            *shared.last_body.lock().unwrap_or_else(|e| e.into_inner()) = body;
            let response = json(StatusCode::OK, shared.completion.clone());
            shared.requests.fetch_add(1, Ordering::Relaxed);
            shared.handling_us.fetch_add(
                started.elapsed().as_micros().try_into().unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            response
        }
        (Method::GET, "/last-body") => json(
            StatusCode::OK,
            shared
                .last_body
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        ),
        (Method::GET, "/stats") => json(
            StatusCode::OK,
            Bytes::from(
                serde_json::json!({
                    "requests": shared.requests.load(Ordering::Relaxed),
                    "handling_us": shared.handling_us.load(Ordering::Relaxed),
                })
                .to_string(),
            ),
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"{\"error\":{\"message\":\"no such endpoint\"}}"),
        ),
    };
    Ok(response)
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
