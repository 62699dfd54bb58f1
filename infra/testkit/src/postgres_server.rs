use std::fs::OpenOptions;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::{Connection, PgConnection};
use tempfile::TempDir;

/// How long `start` and `start_again` wait for the server to accept connections,
/// crash recovery included.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A private PostgreSQL server owned by one test, on a free loopback port, with its own
/// data directory; stopped and its directory removed on drop.
///
/// Unlike the shared server of [`crate::TestDatabase`], this one may be killed and
/// restarted mid-transaction without disturbing other tests. It runs with `fsync=on` and
/// `synchronous_commit=on`, so "committed" means "on disk in the WAL", as in production.
///
/// PostgreSQL refuses to run as root: when the test runs as root, `initdb` and the
/// postmaster run as the `postgres` OS user, which then owns the temporary directory.
pub struct PostgresServer {
    bin_dir: PathBuf,
    run_as: Option<OsUser>,
    port: u16,
    data: PathBuf,
    sockets: PathBuf,
    log: PathBuf,
    postmaster: Option<Child>,
    max_connections: u32,
    /// Holds the data directory, removed when the server is dropped.
    _root: TempDir,
}

impl PostgresServer {
    /// Initialises a cluster in a temporary directory and starts it on a free port.
    ///
    /// # Panics
    /// When the PostgreSQL binaries are missing or the server does not come up.
    pub async fn start() -> Self {
        Self::start_with_max_connections(40).await
    }

    /// As [`PostgresServer::start`], accepting up to `max_connections` clients (a whole
    /// system of replicated roles needs more than one test's 40).
    ///
    /// # Panics
    /// When the PostgreSQL binaries are missing or the server does not come up.
    pub async fn start_with_max_connections(max_connections: u32) -> Self {
        Self::try_start(max_connections)
            .await
            .expect("starting a private PostgreSQL for a test")
    }

    async fn try_start(max_connections: u32) -> anyhow::Result<Self> {
        let bin_dir = postgres_bin_dir()?;
        let run_as = if effective_uid()? == 0 {
            Some(OsUser::lookup("postgres")?)
        } else {
            None
        };
        let root = tempfile::Builder::new()
            .prefix("shopstream-pg-")
            .tempdir()?;
        let data = root.path().join("data");
        let sockets = root.path().join("sockets");
        let log = root.path().join("server.log");
        std::fs::create_dir(&sockets)?;
        if let Some(user) = &run_as {
            for path in [root.path(), sockets.as_path()] {
                std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                    .with_context(|| format!("handing {} to {}", path.display(), user.name))?;
            }
        }
        let mut server = Self {
            bin_dir,
            run_as,
            port: free_port()?,
            data,
            sockets,
            log,
            postmaster: None,
            max_connections,
            _root: root,
        };
        server.initdb().await?;
        server.spawn_until_ready().await?;
        Ok(server)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of database `name` on this server (which the caller creates).
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The TCP port the server listens on; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Crashes the server: SIGKILL to the postmaster and to every process it forked, as
    /// when the machine or container dies. Nothing is flushed or checkpointed; every open
    /// connection sees an error, and the next start runs crash recovery from the WAL.
    ///
    /// Killing only the postmaster is not enough: its backends notice the death of their
    /// parent only eventually, and meanwhile they keep serving their clients, commits
    /// included. So the postmaster is first stopped (SIGSTOP, so that it forks no new
    /// backend), its children are listed from `/proc`, and then all of them are killed.
    pub fn kill(&mut self) {
        let Some(mut postmaster) = self.postmaster.take() else {
            return;
        };
        let pid = postmaster.id();
        signal("STOP", &[pid]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_state(pid).is_some_and(|state| state != 'T') && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut doomed = children_of(pid);
        doomed.push(pid);
        signal("KILL", &doomed);
        // std's `Child::kill` sends SIGKILL too, in case `kill` could not be run.
        let _ = postmaster.kill();
        let _ = postmaster.wait();
        // The children are not ours to wait for; they are gone once they are zombies.
        let deadline = Instant::now() + Duration::from_secs(5);
        while doomed
            .iter()
            .any(|&child| process_state(child).is_some_and(|state| state != 'Z'))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the server in "immediate" mode (SIGQUIT): the postmaster terminates every
    /// backend and exits without a checkpoint, and returns once they are all gone.
    pub fn stop_immediate(&mut self) {
        if let Some(mut postmaster) = self.postmaster.take() {
            if !signal("QUIT", &[postmaster.id()]) {
                let _ = postmaster.kill();
            }
            let _ = postmaster.wait();
        }
    }

    /// Starts the server again on the same port and data directory, and waits (bounded)
    /// until it accepts connections, crash recovery included.
    ///
    /// # Panics
    /// When it does not come back.
    pub async fn start_again(&mut self) {
        self.kill();
        self.spawn_until_ready()
            .await
            .expect("restarting the private PostgreSQL");
    }

    /// The server's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn initdb(&self) -> anyhow::Result<()> {
        let mut initdb = self.command("initdb");
        initdb
            .arg("--pgdata")
            .arg(&self.data)
            .args(["--username=postgres", "--auth=trust", "--encoding=UTF8"])
            .args(["--locale=C", "--no-instructions"])
            // Skips only initdb's own final fsync of the fresh cluster; the server runs
            // with fsync on, and the tests crash processes, not the machine.
            .arg("--no-sync");
        let output = tokio::process::Command::from(initdb)
            .output()
            .await
            .context("running initdb")?;
        if !output.status.success() {
            bail!(
                "initdb failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Spawns the postmaster and waits until it answers a query.
    ///
    /// A new postmaster refuses to start while a process of the old one is still attached
    /// to its shared memory (a backend that outlived the wait in `kill`, say); so a
    /// postmaster that exits early is spawned again until the deadline.
    async fn spawn_until_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        self.spawn()?;
        loop {
            if self.accepts_queries().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                bail!(
                    "PostgreSQL did not accept connections on port {} within {READY_TIMEOUT:?}:\n{}",
                    self.port,
                    self.log()
                );
            }
            let exited = match self.postmaster.as_mut() {
                Some(postmaster) => postmaster.try_wait()?.is_some(),
                None => true,
            };
            if exited {
                self.postmaster = None;
                self.spawn()?;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut postgres = self.command("postgres");
        postgres
            .arg("-D")
            .arg(&self.data)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg("listen_addresses=127.0.0.1")
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.sockets.display()
            ))
            .args(["-c", "fsync=on", "-c", "synchronous_commit=on"])
            .args(["-c", "full_page_writes=on", "-c"])
            .arg(format!("max_connections={}", self.max_connections))
            .args(["-c", "shared_buffers=16MB", "-c", "logging_collector=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let postmaster = postgres
            .spawn()
            .with_context(|| format!("spawning postgres from {}", self.bin_dir.display()))?;
        self.postmaster = Some(postmaster);
        Ok(())
    }

    async fn accepts_queries(&self) -> bool {
        let Ok(mut connection) = PgConnection::connect(&self.url()).await else {
            return false;
        };
        let answered = sqlx::query("SELECT 1")
            .execute(&mut connection)
            .await
            .is_ok();
        let _ = connection.close().await;
        answered
    }

    /// A command running PostgreSQL program `program`, as the `postgres` OS user when
    /// the test runs as root.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        command.current_dir(self._root.path());
        if let Some(user) = &self.run_as {
            // std drops root's supplementary groups when it switches the uid.
            command.uid(user.uid).gid(user.gid);
            command.env("HOME", &user.home).env("USER", &user.name);
        }
        command
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Immediate stop waits for every backend, so none writes into the directory
        // while `TempDir` removes it.
        self.stop_immediate();
    }
}

/// An OS account from `/etc/passwd`.
#[derive(Debug, Clone)]
struct OsUser {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

impl OsUser {
    fn lookup(name: &str) -> anyhow::Result<Self> {
        let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
        let line = passwd
            .lines()
            .find(|line| line.split(':').next() == Some(name))
            .with_context(|| {
                format!("tests run as root, but there is no `{name}` OS user to run PostgreSQL as")
            })?;
        let fields: Vec<&str> = line.split(':').collect();
        let [_, _, uid, gid, _, home, ..] = fields.as_slice() else {
            bail!("malformed /etc/passwd entry for {name}: {line}");
        };
        Ok(Self {
            name: name.to_owned(),
            uid: uid.parse().context("uid in /etc/passwd")?,
            gid: gid.parse().context("gid in /etc/passwd")?,
            home: PathBuf::from(home),
        })
    }
}

/// The effective uid of this process, from `/proc/self/status` (no `unsafe` needed).
fn effective_uid() -> anyhow::Result<u32> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .context("no effective uid in /proc/self/status")
}

/// The directory of `initdb` and `postgres`: `PG_BIN_DIR`, else `pg_config --bindir`,
/// else the newest `/usr/lib/postgresql/<major>/bin`.
fn postgres_bin_dir() -> anyhow::Result<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("PG_BIN_DIR").map(PathBuf::from) {
        if has_server(&dir) {
            return Ok(dir);
        }
        bail!("PG_BIN_DIR={} holds no initdb and postgres", dir.display());
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let dir = entry.path().join("bin");
            has_server(&dir).then_some((major, dir))
        })
        .max_by_key(|(major, _)| *major);
    match newest {
        Some((_, dir)) => Ok(dir),
        None => {
            bail!("no PostgreSQL server binaries found (set PG_BIN_DIR, or install postgresql)")
        }
    }
}

/// Sends signal `name` (`KILL`, `STOP`, `QUIT`) to `pids` with the `kill` program, since
/// the workspace forbids the `unsafe` a direct `kill(2)` needs; true when all got it.
fn signal(name: &str, pids: &[u32]) -> bool {
    Command::new("kill")
        .arg("-s")
        .arg(name)
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The fields of `/proc/<pid>/stat` after the command name: state, parent pid, ...
fn proc_stat(pid: &str) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the last `)` ends it.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// The state letter of process `pid` (`R`, `S`, `T`, `Z`...), or `None` once it is gone.
fn process_state(pid: u32) -> Option<char> {
    proc_stat(&pid.to_string()).map(|(state, _)| state)
}

/// The live processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let pid: u32 = name.to_str()?.parse().ok()?;
            let (state, ppid) = proc_stat(name.to_str()?)?;
            (ppid == parent && state != 'Z').then_some(pid)
        })
        .collect()
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}
