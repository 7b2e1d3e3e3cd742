//! The accept loop: idle and slow-header connections are closed, and shutdown closes
//! live sockets with 1001 while requests in flight finish.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use trellis_server::serve::{serve, ConnectionLimits};

use crate::support::TestApp;

/// Serves `app` with `limits` until the returned sender fires (or is dropped).
async fn start(
    app: &TestApp,
    limits: ConnectionLimits,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = app.router.clone();
    let shutdown = app.state.shutdown.clone();
    let server = tokio::spawn(async move {
        let signal = async {
            let _ = stopped.await;
        };
        serve(listener, router, shutdown, signal, &limits).await;
    });
    (addr, stop, server)
}

/// Reads until the peer closes; how long that took.
async fn time_to_close(what: &str, mut stream: TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the {what} connection stayed open for 10 s"),
        }
    }
}

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed() {
    let app = TestApp::new().await;
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(5),
    };
    let (addr, _stop, _server) = start(&app, limits).await;
    // Never sends a byte.
    let idle = TcpStream::connect(addr).await.unwrap();
    // Sends half a request line and then nothing (Slowloris).
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Finishes one request, then idles on keep-alive.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    for (what, stream) in [("idle", idle), ("slow", slow), ("kept alive", kept)] {
        let took = time_to_close(what, stream).await;
        assert!(
            took < Duration::from_secs(5),
            "{what} closed after {took:?}"
        );
    }
    // The server still answers new connections.
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    fresh
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    fresh.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[tokio::test]
async fn shutdown_closes_live_sockets_with_1001_and_stops_accepting() {
    let app = TestApp::new().await;
    let user = app.sign_up("bye@x.test").await;
    let (addr, stop, server) = start(&app, ConnectionLimits::default()).await;
    let mut request = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", user.token) } });
    socket.send(Message::text(init.to_string())).await.unwrap();
    let ack = socket.next().await.unwrap().unwrap();
    assert!(ack.to_text().unwrap().contains("connection_ack"), "{ack:?}");

    stop.send(()).unwrap();
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .expect("the socket was closed within 5 s");
    assert_eq!(close, Some(1001));
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("shutdown finished within the grace period")
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

/// A second Trellis process on the same data dir (`just run seed-demo` while `just
/// run` serves) uses the embedded cluster the first one started and leaves it running;
/// it used to stop it, and the serving process answered 503 until restarted.
#[tokio::test]
async fn a_second_process_attaches_to_the_embedded_cluster_and_leaves_it_running() {
    let dir =
        std::env::temp_dir().join(format!("trellis-attach-{}", uuid::Uuid::new_v4().simple()));
    let data = dir.join("pg");
    let mut cluster = trellis_server::embedded_pg::Cluster::start(&data).unwrap();
    let port = cluster.port;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_trellis"))
        .arg("migrate")
        .env("TRELLIS_DATA_DIR", &dir)
        .env_remove("DATABASE_URL")
        .env_remove("TRELLIS_APP_DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The owner's cluster still serves, on the same port.
    let admin = sea_orm::Database::connect(cluster.admin_url())
        .await
        .unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(&admin, "SELECT 1")
        .await
        .unwrap();
    admin.close().await.unwrap();
    assert_eq!(cluster.port, port);
    cluster.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
