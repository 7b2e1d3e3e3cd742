//! An embedded PostgreSQL cluster made from the machine's PostgreSQL binaries, for
//! running with no setup and for tests. PostgreSQL refuses to run as root, so when this
//! process is root the cluster runs as the `postgres` system user.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

const INSTALL_HINT: &str = "no PostgreSQL binaries found (looked for pg_ctl on PATH and in /usr/lib/postgresql/*/bin, \
/usr/local/pgsql/bin, /opt/homebrew/bin). Install PostgreSQL (Debian/Ubuntu: `apt-get install postgresql`; \
macOS: `brew install postgresql@16`) or set DATABASE_URL to an existing server";

/// The folder holding `initdb`, `pg_ctl` and `postgres`.
pub fn find_binaries() -> Result<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let pg_ctl = dir.join("pg_ctl");
            if let Ok(real) = pg_ctl.canonicalize() {
                if let Some(parent) = real.parent().filter(|p| has_all(p)) {
                    return Ok(parent.to_path_buf());
                }
            }
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    // Highest major version first.
    candidates.sort_by_key(|p| {
        std::cmp::Reverse(
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok()),
        )
    });
    candidates.extend(
        [
            "/usr/local/pgsql/bin",
            "/opt/homebrew/bin",
            "/usr/local/bin",
        ]
        .map(PathBuf::from),
    );
    candidates
        .into_iter()
        .find(|d| has_all(d))
        .context(INSTALL_HINT)
}

/// The user the cluster runs as: this process's, or `postgres` when this is root.
fn run_as(command: &mut Command) -> Result<Option<nix::unistd::User>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")?
        .context("running as root, and there is no `postgres` system user to run PostgreSQL as; run as another user or set DATABASE_URL")?;
    command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    Ok(Some(user))
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A cluster directory and how to reach it.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    /// Present when this process started the cluster as a watched child (tests).
    watched: Option<Child>,
    /// Whether this process started the cluster (and so stops it): false when it
    /// attached to one another live Trellis process runs.
    owned: bool,
}

/// The file in the data dir naming the Trellis process that started the cluster.
const OWNER_FILE: &str = "trellis.owner";

/// The port of the cluster under `data` when another live process started it: read
/// from the owner file's pid and PostgreSQL's own `postmaster.pid` (its fourth line).
fn live_owner_port(data: &Path) -> Option<(i32, u16)> {
    let owner: i32 = std::fs::read_to_string(data.join(OWNER_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let alive = owner != std::process::id() as i32
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(owner), None).is_ok();
    if !alive {
        return None;
    }
    let port = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .nth(3)?
        .trim()
        .parse()
        .ok()?;
    Some((owner, port))
}

impl Cluster {
    /// The superuser URL of the maintenance database.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates the cluster at `data` unless it exists.
    fn init(bin: &Path, data: &Path) -> Result<()> {
        if data.join("PG_VERSION").exists() {
            return Ok(());
        }
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.args(["-D"]).arg(data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        ]);
        if let Some(user) = run_as(&mut initdb)? {
            std::os::unix::fs::chown(data, Some(user.uid.as_raw()), Some(user.gid.as_raw()))?;
        }
        let out = initdb.output().context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Starts (creating if needed) the cluster under `data` with `pg_ctl`; it keeps
    /// running until [`Cluster::stop`].
    pub fn start(data: &Path) -> Result<Self> {
        let bin = find_binaries()?;
        let data = std::path::absolute(data)?;
        Self::init(&bin, &data)?;
        // A cluster left running by a crashed run is stopped first: it may be on a port
        // nobody remembers.
        let mut status = Command::new(bin.join("pg_ctl"));
        status
            .arg("-D")
            .arg(&data)
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        run_as(&mut status)?;
        if status.status().is_ok_and(|s| s.success()) {
            // A running Trellis server started it (`just run seed-demo` beside `just
            // run`): use it, and leave it to its owner. Stopping it would take the
            // database from under the server.
            if let Some((owner, port)) = live_owner_port(&data) {
                tracing::info!(
                    owner,
                    port,
                    "using the embedded cluster a running Trellis process started"
                );
                return Ok(Self {
                    bin,
                    data,
                    port,
                    watched: None,
                    owned: false,
                });
            }
            tracing::warn!(data = %data.display(), "stopping a cluster left running by an earlier run");
            let mut stale = Self {
                bin: bin.clone(),
                data: data.clone(),
                port: 0,
                watched: None,
                owned: true,
            };
            stale.stop()?;
        }
        let port = free_port()?;
        let log = data.join("server.log");
        let mut pg_ctl = Command::new(bin.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1",
                data.display()
            ))
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null());
        run_as(&mut pg_ctl)?;
        let out = pg_ctl.output().context("running pg_ctl start")?;
        if !out.status.success() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            bail!(
                "pg_ctl start failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                tail.lines().rev().take(10).collect::<Vec<_>>().join("\n")
            );
        }
        std::fs::write(data.join(OWNER_FILE), std::process::id().to_string())
            .with_context(|| format!("writing {}", data.join(OWNER_FILE).display()))?;
        Ok(Self {
            bin,
            data,
            port,
            watched: None,
            owned: true,
        })
    }

    /// Starts a throw-away cluster as a child that dies with this process: the shell
    /// wrapper stops PostgreSQL as soon as its stdin (held by us) closes.
    pub fn start_watched(data: &Path) -> Result<Self> {
        let bin = find_binaries()?;
        Self::init(&bin, data)?;
        let port = free_port()?;
        let script = format!(
            "'{}' -D '{}' -p {port} -k '{}' -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300 -c shared_buffers=128MB >'{}/server.log' 2>&1 & pid=$!; \
             read _; kill -QUIT $pid; wait $pid",
            bin.join("postgres").display(),
            data.display(),
            data.display(),
            data.display()
        );
        let mut sh = Command::new("sh");
        sh.args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        run_as(&mut sh)?;
        let child = sh.spawn().context("starting postgres")?;
        let cluster = Self {
            bin,
            data: data.to_path_buf(),
            port,
            watched: Some(child),
            owned: true,
        };
        cluster.wait_ready()?;
        Ok(cluster)
    }

    fn wait_ready(&self) -> Result<()> {
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                let ready = Command::new(self.bin.join("pg_isready"))
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &self.port.to_string(),
                        "-U",
                        "postgres",
                    ])
                    .stdout(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(true);
                if ready {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "PostgreSQL did not start; see {}/server.log",
            self.data.display()
        )
    }

    /// Stops a cluster started with [`Cluster::start`]; one this process only attached
    /// to keeps running for its owner.
    pub fn stop(&mut self) -> Result<()> {
        if !self.owned {
            return Ok(());
        }
        if let Some(mut child) = self.watched.take() {
            drop(child.stdin.take());
            child.wait()?;
            return Ok(());
        }
        let mut pg_ctl = Command::new(self.bin.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null());
        run_as(&mut pg_ctl)?;
        let status = pg_ctl.status()?;
        if !status.success() {
            bail!("pg_ctl stop failed");
        }
        let _ = std::fs::remove_file(self.data.join(OWNER_FILE));
        Ok(())
    }
}
