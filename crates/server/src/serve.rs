//! The accept loop: hyper's HTTP/1 and HTTP/2 with a header-read timeout (which also
//! closes idle keep-alive connections, since hyper arms it whenever it waits for a
//! request head), `TCP_NODELAY` on every connection, and a graceful shutdown that
//! closes live sockets with 1001 and drains requests within a grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// How long connections may take and how long shutdown may last.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// Longest wait for a request's headers, whether the connection is new, idle
    /// between requests, or sending them slowly.
    pub header_read_timeout: Duration,
    /// How long shutdown waits for requests in flight and sockets closing.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The server's shutdown as long-lived connections see it: a signal they watch, and a
/// tracker of their tasks (and of work finished after answering) that shutdown waits
/// for.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    signal: CancellationToken,
    sockets: TaskTracker,
}

impl Shutdown {
    /// Tells every live socket to close; no new one is tracked after this.
    pub fn begin(&self) {
        self.signal.cancel();
        self.sockets.close();
    }

    /// Resolves once shutdown has begun.
    pub async fn begun(&self) {
        self.signal.cancelled().await;
    }

    /// Runs a live socket's task so that shutdown waits for it to close.
    pub fn track<F: Future>(&self, task: F) -> impl Future<Output = F::Output> {
        self.sockets.track_future(task)
    }

    /// Spawns work a request finishes after its response (a process call's log), so
    /// that shutdown waits for it as for a live socket.
    pub fn after_answer<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.sockets.spawn(task);
    }

    async fn sockets_closed(&self) {
        self.sockets.wait().await;
    }
}

/// Serves `router` on `listener` until `signal` resolves, then shuts down: stops
/// accepting, tells live sockets to close, and waits up to the grace period for
/// requests in flight and sockets to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
    signal: impl Future<Output = ()>,
    limits: &ConnectionLimits,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(signal);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, usually: back off instead of spinning.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        // Small responses and live events go out at once instead of waiting for Nagle.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "TCP_NODELAY not set");
        }
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            router.clone().oneshot(request.map(Body::new))
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let first_byte_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            // hyper's timer starts once the protocol is known, and telling HTTP/1 from
            // HTTP/2 waits for the first bytes: a connection that sends none is closed
            // here.
            let mut first = [0u8; 1];
            match tokio::time::timeout(first_byte_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(err) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: closing live sockets and draining requests");
    shutdown.begin();
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        graceful.shutdown().await;
        shutdown.sockets_closed().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            grace = ?limits.shutdown_grace,
            "shutdown grace period over; dropping what is left"
        );
    }
}
