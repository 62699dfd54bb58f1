use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;

/// How a test server is configured.
#[derive(Debug, Clone)]
pub struct NatsServerOptions {
    /// Enable JetStream (the default).
    pub jetstream: bool,
    /// `sync_interval: always`: fsync every write before acknowledging it.
    pub sync_always: bool,
    /// Run this binary as it is, without the version check (to test refusing old servers).
    pub binary: Option<PathBuf>,
}

impl Default for NatsServerOptions {
    fn default() -> Self {
        Self {
            jetstream: true,
            sync_always: false,
            binary: None,
        }
    }
}

/// A real `nats-server -js` owned by one test; killed and its store removed on drop.
pub struct NatsServer {
    binary: Option<PathBuf>,
    child: Option<Child>,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    /// Holds the store directory, removed when the server is dropped.
    _store: TempDir,
}

impl NatsServer {
    /// Starts a server with JetStream on a free loopback port.
    ///
    /// # Panics
    /// When no suitable nats-server is installed (run `scripts/install.sh`).
    pub fn start() -> Self {
        Self::start_with(NatsServerOptions::default())
    }

    /// Starts a server with the given options.
    ///
    /// # Panics
    /// When no suitable nats-server is installed or it does not come up.
    pub fn start_with(options: NatsServerOptions) -> Self {
        Self::try_start(options).expect("starting nats-server for a test")
    }

    fn try_start(options: NatsServerOptions) -> anyhow::Result<Self> {
        let store = tempfile::Builder::new()
            .prefix("shopstream-nats-")
            .tempdir()?;
        let port = free_port()?;
        let config = store.path().join("server.conf");
        let sync = if options.sync_always {
            "\n  sync_interval: always"
        } else {
            ""
        };
        let jetstream = if options.jetstream {
            format!(
                "jetstream {{\n  store_dir: \"{}\"{sync}\n}}\n",
                store.path().join("js").display()
            )
        } else {
            String::new()
        };
        std::fs::write(
            &config,
            format!("listen: 127.0.0.1:{port}\nserver_name: test-{port}\n{jetstream}"),
        )?;
        Self::spawn_configured(store, port, config, options.binary)
    }

    /// Starts the server configured by `config` (a file inside `store`) listening for
    /// clients on `port`, and waits until it does.
    pub(crate) fn spawn_configured(
        store: TempDir,
        port: u16,
        config: PathBuf,
        binary: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let log = store.path().join("server.log");
        let mut server = Self {
            binary,
            child: None,
            port,
            config,
            log,
            _store: store,
        };
        server.spawn()?;
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // std's `Child::kill` sends SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store directory.
    ///
    /// # Panics
    /// When it does not come back.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().expect("restarting nats-server");
    }

    /// The server's process id while it runs (to pause it with SIGSTOP).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// The server's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let binary = match &self.binary {
            Some(binary) => binary.clone(),
            None => nats_server_binary()?,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "nats-server did not listen on {} in time:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn nats_server_binary() -> anyhow::Result<PathBuf> {
    let binary = std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"));
    let output = Command::new(&binary).arg("--version").output().with_context(|| {
        format!(
            "cannot run {}: install the pinned server with scripts/install.sh and source scripts/env.sh",
            binary.display()
        )
    })?;
    let version = String::from_utf8_lossy(&output.stdout);
    let numbers: Vec<u64> = version
        .trim()
        .trim_start_matches("nats-server: v")
        .split(['.', '-'])
        .take(2)
        .filter_map(|part| part.parse().ok())
        .collect();
    if numbers.len() < 2 || (numbers[0], numbers[1]) < (2, 12) {
        bail!(
            "{} is `{}`; tests need nats-server 2.12 or newer (scripts/install.sh installs one)",
            binary.display(),
            version.trim()
        );
    }
    Ok(binary)
}
