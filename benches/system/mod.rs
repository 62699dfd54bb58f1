//! What the benches that run shopstream as separate processes share (`faults` and
//! `capacity`): the roles as child processes, starting them in an order a new cluster
//! copes with, running the CLI, and finding the load generator.

// Each bench that includes this module uses part of it.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use testkit::http_get;

pub const BIN: &str = env!("CARGO_BIN_EXE_shopstream");

/// The `shopstream-loadgen` binary: another package's, so built here, with the bench's
/// profile, before its first use.
pub fn loadgen() -> PathBuf {
    testkit::cli::workspace_binary("shopstream-loadgen", "shopstream-loadgen")
}
pub const ADMIN_EMAIL: &str = "admin@bench.local";
pub const ADMIN_PASSWORD: &str = "bench-admin-password";

/// The value of environment variable `name`, or `default` when it is not set.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={value} is not valid")),
        Err(_) => Ok(default),
    }
}

pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// One replica of a role, run as its own process, which a bench may kill and restart.
pub struct Role {
    pub name: String,
    pub command: &'static str,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    pub child: Option<Child>,
}

impl Role {
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(BIN)
            .arg(self.command)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("the role is not running")?;
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed");
        }
        Ok(())
    }

    /// Restarts the process if it has exited on its own (a role that gave up).
    pub fn ensure_running(&mut self) -> anyhow::Result<bool> {
        let exited = match self.child.as_mut() {
            Some(child) => child.try_wait()?.is_some(),
            None => true,
        };
        if exited {
            self.child = None;
            self.spawn()?;
        }
        Ok(exited)
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The deployment of docker-compose.yml as processes: `serve` ×2, `project` ×projectors,
/// `saga` ×sagas; the roles in that order, the APIs first.
pub struct Deployment {
    pub roles: Vec<Role>,
    pub api_addrs: [SocketAddr; 2],
}

impl Deployment {
    /// Starts every role with `common` settings, logs under `work`. The first API
    /// provisions the stream and buckets alone (six roles creating R3 streams at once
    /// on a new cluster time out); a role that gives up meanwhile is started again, as
    /// a container's restart policy would.
    pub async fn start(
        common: &[(String, String)],
        work: &Path,
        projectors: usize,
        sagas: usize,
    ) -> anyhow::Result<Self> {
        let api_addrs = [free_addr()?, free_addr()?];
        let mut roles = Vec::new();
        for (i, addr) in api_addrs.iter().enumerate() {
            let mut env = common.to_vec();
            env.push(("HTTP_ADDR".to_owned(), addr.to_string()));
            roles.push(Role {
                name: format!("serve-{}", i + 1),
                command: "serve",
                env,
                log: work.join(format!("serve-{}.log", i + 1)),
                child: None,
            });
        }
        for (command, replicas) in [("project", projectors), ("saga", sagas)] {
            for i in 1..=replicas {
                roles.push(Role {
                    name: format!("{command}-{i}"),
                    command,
                    env: common.to_vec(),
                    log: work.join(format!("{command}-{i}.log")),
                    child: None,
                });
            }
        }
        for (i, addr) in api_addrs.iter().enumerate() {
            if i == 1 {
                for role in roles.iter_mut().skip(1) {
                    role.spawn()?;
                }
            } else {
                roles[0].spawn()?;
            }
            let deadline = Instant::now() + Duration::from_secs(180);
            while wait_ready(*addr, Duration::from_secs(5)).await.is_err() {
                for role in &mut roles {
                    if role.child.is_some() {
                        role.ensure_running()?;
                    }
                }
                if Instant::now() > deadline {
                    dump_logs(&roles);
                    bail!("the API on {addr} was not ready within 180 s");
                }
            }
        }
        Ok(Self { roles, api_addrs })
    }

    /// The GraphQL endpoints, comma-separated, for `shopstream-loadgen --url`.
    pub fn graphql_urls(&self) -> String {
        self.api_addrs
            .iter()
            .map(|addr| format!("http://{addr}/graphql"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Waits until the API on `addr` answers `/readyz` with 200.
pub async fn wait_ready(addr: SocketAddr, bound: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + bound;
    loop {
        if let Ok((200, _)) = http_get(addr, "/readyz").await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the API on {addr} was not ready within {bound:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `shopstream <args>` to the end: its exit code and its output.
pub fn run(
    args: &[&str],
    env: &[(String, String)],
    extra: &[(&str, &str)],
) -> anyhow::Result<(i32, String)> {
    run_binary(Path::new(BIN), args, env, extra)
}

/// Runs `binary <args>` to the end: its exit code and its output.
pub fn run_binary(
    binary: &Path,
    args: &[&str],
    env: &[(String, String)],
    extra: &[(&str, &str)],
) -> anyhow::Result<(i32, String)> {
    let output = Command::new(binary)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} {}", binary.display(), args.join(" ")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.code().unwrap_or(-1), text))
}

/// `shopstream migrate`: creates the database and its tables.
pub fn migrate(common: &[(String, String)]) -> anyhow::Result<()> {
    let (code, output) = run(&["migrate"], common, &[])?;
    if code != 0 {
        bail!("migrate failed: {output}");
    }
    Ok(())
}

/// Creates the admin the load generator signs in as (once the roles are up).
pub fn create_admin(common: &[(String, String)]) -> anyhow::Result<()> {
    let (code, output) = run(
        &[
            "accounts",
            "create",
            "--email",
            ADMIN_EMAIL,
            "--role",
            "admin",
        ],
        common,
        &[("SHOPSTREAM_PASSWORD", ADMIN_PASSWORD)],
    )?;
    if code != 0 {
        bail!("accounts create failed: {output}");
    }
    Ok(())
}

/// The last lines each role logged, for a failed run.
pub fn dump_logs(roles: &[Role]) {
    for role in roles {
        let log = std::fs::read_to_string(&role.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        eprintln!("--- {} (last lines)", role.name);
        for line in tail.into_iter().rev() {
            eprintln!("{line}");
        }
    }
}
