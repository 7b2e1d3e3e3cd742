//! `trellis-loadgen`: the load generator of `just bench` (bench/README.md).
//!
//! It POSTs one request body (or, with `--bodies`, a list of them in turn) over
//! `--concurrency` persistent HTTP/1.1 connections, as pgbench runs its script over
//! persistent PostgreSQL connections, so that both sides of a GraphQL-against-SQL
//! comparison are driven by a compiled client of similar cost. It runs on one thread,
//! which leaves the other cores to the server and the database.
//!
//! The protocol with the calling script, over stdin and stdout:
//! 1. every connection sends `--warmup` requests (unmeasured), then it prints `ready`;
//! 2. the caller reads its own "before" figures and writes a line to stdin;
//! 3. every connection sends requests back to back for `--duration` seconds (a request
//!    that is running when the time is up finishes and counts), or `--requests` of them;
//! 4. it prints one JSON object (requests, seconds, latency percentiles by nearest
//!    rank, failures) and exits when stdin ends, so the caller can read its CPU time.
//!
//! Every response must be 200, start with `--prefix`, hold every `--contains` and no
//! `"errors":`. The first response of each connection and every `--sample-every`-th one
//! are written to `--samples`, one per line, for the caller to check in full; with
//! `--latencies`, every measured latency (microseconds) too, one per line.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{header, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(about = "Bounded HTTP load over persistent connections")]
struct Args {
    /// Where to POST, as `http://host:port/path`.
    #[arg(long)]
    url: String,
    /// A file holding the request body (sent as `application/json`).
    #[arg(long, required_unless_present = "bodies", conflicts_with = "bodies")]
    body: Option<PathBuf>,
    /// A file of request bodies, one per line: the requests of all connections take
    /// them in turn (round robin), e.g. a cache's primed inputs.
    #[arg(long)]
    bodies: Option<PathBuf>,
    /// An extra request header, `Name: value`; repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Measured requests per connection, instead of `--duration`.
    #[arg(long)]
    requests: Option<usize>,
    /// Unmeasured requests per connection before the measured load.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// What every response body must start with.
    #[arg(long, default_value = "{\"data\":")]
    prefix: String,
    /// What every response body must contain; repeatable.
    #[arg(long = "contains")]
    contains: Vec<String>,
    /// Where to write the sampled response bodies, one per line.
    #[arg(long)]
    samples: Option<PathBuf>,
    /// Sample every n-th measured response of a connection (and its first).
    #[arg(long, default_value_t = 25)]
    sample_every: usize,
    /// Where to write every measured latency, in microseconds, one per line.
    #[arg(long)]
    latencies: Option<PathBuf>,
}

/// What the requests share.
struct Target {
    authority: String,
    path: String,
    headers: Vec<(header::HeaderName, header::HeaderValue)>,
    bodies: Vec<Bytes>,
    /// The next body to send (an index into `bodies`, modulo its length).
    next: AtomicUsize,
    prefix: Vec<u8>,
    contains: Vec<Vec<u8>>,
}

impl Target {
    /// The body of the next request: the one body, or the next of `--bodies` in turn.
    fn body(&self) -> Bytes {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.bodies[i % self.bodies.len()].clone()
    }
}

/// When a connection's measured load ends.
#[derive(Clone, Copy)]
enum Until {
    Time(Instant),
    Count(usize),
}

/// One connection's results.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    failures: Vec<String>,
    samples: Vec<Bytes>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let target = std::sync::Arc::new(target(&args)?);
    let mut connections = Vec::with_capacity(args.concurrency);
    let mut tallies = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let mut sender = connect(&target.authority).await?;
        let mut tally = Tally::default();
        for i in 0..args.warmup {
            let (status, body) = send(&mut sender, &target).await?;
            if let Some(problem) = check(&target, status, &body) {
                tally.failures.push(format!("warm-up: {problem}"));
            }
            if i == 0 {
                tally.samples.push(body);
            }
        }
        connections.push(sender);
        tallies.push(tally);
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    std::io::stdin().lock().read_line(&mut String::new())?;

    let started = Instant::now();
    let until = match args.requests {
        Some(count) => Until::Count(count),
        None => Until::Time(started + Duration::from_secs_f64(args.duration)),
    };
    let workers: Vec<_> = connections
        .into_iter()
        .zip(tallies)
        .map(|(sender, tally)| {
            let target = target.clone();
            tokio::spawn(load(sender, tally, target, until, args.sample_every.max(1)))
        })
        .collect();
    let mut tallies = Vec::with_capacity(workers.len());
    for worker in workers {
        tallies.push(worker.await?);
    }
    let seconds = started.elapsed().as_secs_f64();

    let mut latencies: Vec<u64> = tallies
        .iter()
        .flat_map(|t| t.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let failures: Vec<&String> = tallies.iter().flat_map(|t| &t.failures).collect();
    if let Some(path) = &args.samples {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        for sample in tallies.iter().flat_map(|t| &t.samples) {
            file.write_all(sample)?;
            file.write_all(b"\n")?;
        }
        file.flush()?;
    }
    if let Some(path) = &args.latencies {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        for us in tallies.iter().flat_map(|t| &t.latencies_us) {
            writeln!(file, "{us}")?;
        }
        file.flush()?;
    }
    let ms = |q: f64| percentile_us(&latencies, q).map(|us| us as f64 / 1000.0);
    let report = serde_json::json!({
        "requests": latencies.len(),
        "seconds": seconds,
        "rps": latencies.len() as f64 / seconds,
        "p50_ms": ms(0.50),
        "p90_ms": ms(0.90),
        "p99_ms": ms(0.99),
        "max_ms": latencies.last().map(|us| *us as f64 / 1000.0),
        "failures": failures.len(),
        "first_failures": failures.iter().take(3).collect::<Vec<_>>(),
    });
    writeln!(stdout, "{report}")?;
    stdout.flush()?;
    // Stay until the caller has read this process's CPU time and closes stdin.
    std::io::stdin().lock().read_line(&mut String::new())?;
    Ok(())
}

/// One connection's measured load: requests back to back until `until`.
async fn load(
    mut sender: SendRequest<Full<Bytes>>,
    mut tally: Tally,
    target: std::sync::Arc<Target>,
    until: Until,
    sample_every: usize,
) -> Tally {
    let mut k = 0usize;
    loop {
        let sent = Instant::now();
        let done = match until {
            Until::Time(end) => sent >= end,
            Until::Count(count) => k >= count,
        };
        if done {
            break;
        }
        match send(&mut sender, &target).await {
            Ok((status, body)) => {
                if let Some(problem) = check(&target, status, &body) {
                    tally.failures.push(problem);
                } else if k.is_multiple_of(sample_every) {
                    tally.samples.push(body);
                }
            }
            Err(err) => {
                tally.failures.push(format!("{err:#}"));
                match connect(&target.authority).await {
                    Ok(fresh) => sender = fresh,
                    Err(err) => {
                        tally.failures.push(format!("reconnecting: {err:#}"));
                        break;
                    }
                }
            }
        }
        tally
            .latencies_us
            .push(sent.elapsed().as_micros().try_into().unwrap_or(u64::MAX));
        k += 1;
    }
    tally
}

fn target(args: &Args) -> anyhow::Result<Target> {
    let Some(rest) = args.url.strip_prefix("http://") else {
        bail!("--url must start with http://");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut headers = vec![(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    )];
    for line in &args.headers {
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("header {line:?} is not `Name: value`"))?;
        headers.push((name.trim().parse()?, value.trim().parse()?));
    }
    let read =
        |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let bodies: Vec<Bytes> = match (&args.body, &args.bodies) {
        (Some(path), _) => vec![read(path)?.into()],
        (None, Some(path)) => read(path)?
            .split(|b| *b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(Bytes::copy_from_slice)
            .collect(),
        (None, None) => bail!("--body or --bodies is required"),
    };
    if bodies.is_empty() {
        bail!("no request bodies");
    }
    Ok(Target {
        authority: authority.to_owned(),
        path: path.to_owned(),
        headers,
        bodies,
        next: AtomicUsize::new(0),
        prefix: args.prefix.as_bytes().to_vec(),
        contains: args
            .contains
            .iter()
            .map(|c| c.as_bytes().to_vec())
            .collect(),
    })
}

async fn connect(authority: &str) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends the request once; returns the status and the whole body.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    target: &Target,
) -> anyhow::Result<(u16, Bytes)> {
    sender.ready().await?;
    let mut request = Request::post(target.path.as_str())
        .header(header::HOST, target.authority.as_str())
        .body(Full::new(target.body()))?;
    request.headers_mut().extend(target.headers.iter().cloned());
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Why a response does not pass the per-response check, if it does not.
fn check(target: &Target, status: u16, body: &[u8]) -> Option<String> {
    let errors = body.windows(9).any(|w| w == b"\"errors\":");
    let newline = body.contains(&b'\n');
    let missing = target
        .contains
        .iter()
        .filter(|needle| !needle.is_empty())
        .any(|needle| !body.windows(needle.len()).any(|w| w == needle.as_slice()));
    if status != 200 || errors || newline || missing || !body.starts_with(&target.prefix) {
        let head = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
        return Some(format!("HTTP {status}: {head}"));
    }
    None
}

/// The nearest-rank percentile of ascending values.
fn percentile_us(sorted: &[u64], q: f64) -> Option<u64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = ((q * sorted.len() as f64).ceil() as usize).saturating_sub(1);
    Some(sorted[rank.min(last)])
}

#[cfg(test)]
mod tests {
    use super::percentile_us;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_us(&values, 0.5), Some(50));
        assert_eq!(percentile_us(&values, 0.99), Some(99));
        assert_eq!(percentile_us(&[7], 0.99), Some(7));
        assert_eq!(percentile_us(&[], 0.5), None);
    }
}
