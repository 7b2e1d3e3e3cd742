//! Test support: one MongoDB wire-protocol server per test run, on a free loopback
//! port, stopped when the test process exits. It is `$TRELLIS_TEST_MONGOD` when set,
//! else `mongod` from the PATH, else SecantusDB's `secantusd-py` from the virtual
//! environment `just mongo-test-server` makes under `target/secantus-venv`. Without
//! any of them the MongoDB tests fail, saying how to get one. Each test names its own
//! database.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

struct Server {
    port: u16,
    /// The watcher shell: its stdin closes when this process exits, and it then stops
    /// the server and removes its data.
    _watcher: Mutex<Child>,
}

fn secantus_venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/secantus-venv/bin/secantusd-py")
}

/// The server binary and whether it is `mongod` (else SecantusDB).
fn binary() -> (PathBuf, bool) {
    let is_mongod = |p: &Path| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("mongod"))
    };
    if let Some(path) = std::env::var_os("TRELLIS_TEST_MONGOD") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "TRELLIS_TEST_MONGOD={} is not a file: point it at a mongod or secantusd-py binary",
            path.display()
        );
        let mongod = is_mongod(&path);
        return (path, mongod);
    }
    if let Some(dirs) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&dirs) {
            let candidate = dir.join("mongod");
            if candidate.is_file() {
                return (candidate, true);
            }
        }
    }
    let venv = secantus_venv();
    if venv.is_file() {
        return (venv, false);
    }
    panic!(
        "no MongoDB server for the tests: install `mongod`, or run `just mongo-test-server` \
         (SecantusDB from PyPI into target/secantus-venv), or set TRELLIS_TEST_MONGOD to a \
         mongod or secantusd-py binary"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (bin, mongod) = binary();
        let port = free_port();
        let data = std::env::temp_dir().join(format!("trellis-test-mongo-{}", std::process::id()));
        std::fs::create_dir_all(&data).expect("mongo data dir");
        let args = if mongod {
            format!("--bind_ip 127.0.0.1 --port {port} --dbpath '{}' --quiet", data.display())
        } else {
            format!(
                "--host 127.0.0.1 --port {port} --storage-path '{}' --standalone --log-level WARNING",
                data.join("db").display()
            )
        };
        let log = data.join("server.log");
        let script = format!(
            "'{}' {args} >'{}' 2>&1 & pid=$!; read _; kill $pid; wait $pid; rm -rf '{}'",
            bin.display(),
            log.display(),
            data.display()
        );
        let watcher = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the MongoDB test server");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the MongoDB test server ({}) did not listen on port {port} within 60 s; see {}",
                bin.display(),
                log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Server {
            port,
            _watcher: Mutex::new(watcher),
        }
    })
}

/// A URL of the test server with a database of its own.
pub fn fresh_url() -> String {
    let port = server().port;
    format!(
        "mongodb://127.0.0.1:{port}/trellis_test_{}?directConnection=true",
        Uuid::new_v4().simple()
    )
}

/// A MongoDB URL where nothing listens (a port just freed).
pub fn dead_url() -> String {
    format!(
        "mongodb://127.0.0.1:{}/trellis_test_down?directConnection=true",
        free_port()
    )
}

/// The `execution_logs` collection at `url`, read directly (no tenant handle).
pub async fn raw_collection(url: &str) -> mongodb::Collection<mongodb::bson::Document> {
    let options = mongodb::options::ClientOptions::parse(url).await.unwrap();
    let database = options.default_database.clone().unwrap();
    mongodb::Client::with_options(options)
        .unwrap()
        .database(&database)
        .collection("execution_logs")
}
