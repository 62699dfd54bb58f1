//! The fault suite (issue 7): the whole system as separate processes on this machine,
//! under load, with faults injected, then the invariants checked against the load
//! generator's own record of acknowledged requests.
//!
//! It starts a three-node NATS cluster on loopback ports (streams R3, `sync_interval:
//! always`), a private PostgreSQL, and the roles replicated: `serve` ×2, `project` ×2,
//! `saga` ×2. `shopstream loadgen` drives shopping traffic through both APIs while a
//! fault is injected every `FAULT_INTERVAL_SECS`, cycling through:
//!
//! - SIGKILL of each role in turn (an API, a projector, a saga replica), restarted a
//!   second later;
//! - SIGKILL of one NATS node (each in turn), restarted three seconds later;
//! - PostgreSQL crashed (SIGKILL of every server process) and started again;
//! - SIGSTOP of a saga replica past its ack wait, then SIGCONT.
//!
//! When the load ends, every role is brought back and `shopstream loadgen check
//! --verify-read-models` checks: no acknowledged order lost, every order terminal, no
//! oversold or stranded stock, payments balance, no duplicate notification, every read
//! model equal to the log. It exits non-zero when any invariant fails.
//!
//! Run: `source scripts/env.sh && cargo bench --bench faults` (also `scripts/fault-suite.sh`).
//! Settings: `FAULT_SECONDS` (load duration, default 60), `FAULT_RATE` (requests/s,
//! default 60), `FAULT_INTERVAL_SECS` (default 4).

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use testkit::{http_get, NatsCluster, PostgresServer};

const BIN: &str = env!("CARGO_BIN_EXE_shopstream");
const ACK_WAIT_MS: u64 = 3_000;
const ADMIN_EMAIL: &str = "admin@faults.local";
const ADMIN_PASSWORD: &str = "faults-admin-password";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={value} is not valid")),
        Err(_) => Ok(default),
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// One replica of a role, run as its own process, which the suite kills and restarts.
struct Role {
    name: String,
    command: &'static str,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Role {
    fn spawn(&mut self) -> anyhow::Result<()> {
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

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
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
    fn ensure_running(&mut self) -> anyhow::Result<bool> {
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

/// What the suite did to the system, for the report.
struct Fault {
    at: Duration,
    what: String,
    took: Duration,
}

async fn wait_ready(addr: SocketAddr, bound: Duration) -> anyhow::Result<()> {
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

fn run(
    args: &[&str],
    env: &[(String, String)],
    extra: &[(&str, &str)],
) -> anyhow::Result<(i32, String)> {
    let output = Command::new(BIN)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running shopstream {}", args.join(" ")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.code().unwrap_or(-1), text))
}

/// The last lines each role logged, for a failed run.
fn dump_logs(roles: &[Role]) {
    for role in roles {
        let log = std::fs::read_to_string(&role.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        eprintln!("--- {} (last lines)", role.name);
        for line in tail.into_iter().rev() {
            eprintln!("{line}");
        }
    }
}

fn record_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = env_or("FAULT_SECONDS", 60)?;
    let rate: f64 = env_or("FAULT_RATE", 60.0)?;
    let interval = Duration::from_secs(env_or("FAULT_INTERVAL_SECS", 4)?);
    let work = tempfile::Builder::new()
        .prefix("shopstream-faults-")
        .tempdir()?;
    let started = Instant::now();

    let mut cluster = NatsCluster::start();
    let mut postgres = PostgresServer::start_with_max_connections(300).await;
    let common: Vec<(String, String)> = [
        ("NATS_URL", cluster.url()),
        ("NATS_REPLICAS", "3".to_owned()),
        ("DATABASE_URL", postgres.database_url("shopstream")),
        (
            "JWT_SECRET",
            "fault-suite-secret-fault-suite-secret-0".to_owned(),
        ),
        ("RATE_LIMIT_IP_PER_SECOND", "0".to_owned()),
        ("RATE_LIMIT_USER_PER_SECOND", "0".to_owned()),
        ("SAGA_ACK_WAIT_MS", ACK_WAIT_MS.to_string()),
        ("SAGA_STEP_TIMEOUT_MS", "20000".to_owned()),
        ("PAYMENT_LATENCY_MS", "10".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
        ("RUST_BACKTRACE", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let (code, output) = run(&["migrate"], &common, &[])?;
    if code != 0 {
        bail!("migrate failed: {output}");
    }

    let api_addrs = [free_addr()?, free_addr()?];
    let mut roles = Vec::new();
    for (i, addr) in api_addrs.iter().enumerate() {
        let mut env = common.clone();
        env.push(("HTTP_ADDR".to_owned(), addr.to_string()));
        roles.push(Role {
            name: format!("serve-{}", i + 1),
            command: "serve",
            env,
            log: work.path().join(format!("serve-{}.log", i + 1)),
            child: None,
        });
    }
    for command in ["project", "saga"] {
        for i in 1..=2 {
            roles.push(Role {
                name: format!("{command}-{i}"),
                command,
                env: common.clone(),
                log: work.path().join(format!("{command}-{i}.log")),
                child: None,
            });
        }
    }
    // The first API provisions the R3 stream and buckets alone (six roles creating them
    // at once on a new cluster time out); a role that gives up is started again, as a
    // container's restart policy would.
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
    let (code, output) = run(
        &[
            "accounts",
            "create",
            "--email",
            ADMIN_EMAIL,
            "--role",
            "admin",
        ],
        &common,
        &[("SHOPSTREAM_PASSWORD", ADMIN_PASSWORD)],
    )?;
    if code != 0 {
        bail!("accounts create failed: {output}");
    }

    let record = work.path().join("record.jsonl");
    let urls = api_addrs
        .iter()
        .map(|addr| format!("http://{addr}/graphql"))
        .collect::<Vec<_>>()
        .join(",");
    let loadgen_out = work.path().join("loadgen.out");
    let mut loadgen = Command::new(BIN)
        .args([
            "loadgen",
            "--url",
            &urls,
            "--rate",
            &rate.to_string(),
            "--duration",
            &format!("{seconds}s"),
            "--setup",
            "--products",
            "20",
            "--stock",
            "5000",
            "--timeout",
            "20s",
            "--record",
        ])
        .arg(&record)
        .env("LOADGEN_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("LOADGEN_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(&loadgen_out)?)
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting shopstream loadgen")?;
    // Faults start once the catalog is set up and traffic is acknowledged.
    let setup_deadline = Instant::now() + Duration::from_secs(120);
    while record_lines(&record) < 20 {
        if loadgen.try_wait()?.is_some() || Instant::now() > setup_deadline {
            bail!(
                "the load generator did not get going: {}",
                std::fs::read_to_string(&loadgen_out).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let load_started = Instant::now();

    let mut faults: Vec<Fault> = Vec::new();
    let mut step = 0usize;
    let mut node = 0usize;
    while loadgen.try_wait()?.is_none() {
        tokio::time::sleep(interval).await;
        if loadgen.try_wait()?.is_some() {
            break;
        }
        let at = load_started.elapsed();
        let begun = Instant::now();
        let what = match step % 6 {
            // SIGKILL of an API, a projector and a saga replica, alternating replicas.
            kind @ 0..=2 => {
                let replica = (step / 6) % 2;
                let index = kind * 2 + replica;
                let role = &mut roles[index];
                role.kill();
                tokio::time::sleep(Duration::from_secs(1)).await;
                role.spawn()?;
                format!("SIGKILL {}, restarted after 1 s", role.name)
            }
            3 => {
                let i = node % 3;
                node += 1;
                cluster.kill(i);
                tokio::time::sleep(Duration::from_secs(3)).await;
                tokio::task::block_in_place(|| cluster.restart(i));
                format!("SIGKILL nats node {i}, restarted after 3 s")
            }
            4 => {
                postgres.kill();
                tokio::time::sleep(Duration::from_millis(500)).await;
                postgres.start_again().await;
                "PostgreSQL crashed (SIGKILL), started again".to_owned()
            }
            _ => {
                let role = &roles[4 + (step / 6) % 2];
                role.signal("STOP")?;
                tokio::time::sleep(Duration::from_millis(ACK_WAIT_MS + 1_500)).await;
                role.signal("CONT")?;
                format!(
                    "SIGSTOP {} for {} ms (ack wait {ACK_WAIT_MS} ms)",
                    role.name,
                    ACK_WAIT_MS + 1_500
                )
            }
        };
        faults.push(Fault {
            at,
            what,
            took: begun.elapsed(),
        });
        step += 1;
    }
    let load_status = loadgen.wait()?;
    let load_report = std::fs::read_to_string(&loadgen_out).unwrap_or_default();
    let mut restarted = Vec::new();
    for role in &mut roles {
        if role.ensure_running()? {
            restarted.push(role.name.clone());
        }
    }

    let (check_code, check_output) = run(
        &[
            "loadgen",
            "check",
            "--record",
            record.to_str().context("a UTF-8 temporary path")?,
            "--settle-timeout",
            "240s",
            "--verify-read-models",
        ],
        &common,
        &[],
    )?;

    let mut report = String::new();
    writeln!(
        report,
        "fault suite: {} s of load at {rate} requests/s over 2 APIs; 3 NATS nodes (R3), 2 projectors, 2 sagas; {} faults",
        seconds,
        faults.len()
    )?;
    writeln!(report, "{:>8}  {:>8}  fault", "at s", "took s")?;
    for fault in &faults {
        writeln!(
            report,
            "{:>8.1}  {:>8.1}  {}",
            fault.at.as_secs_f64(),
            fault.took.as_secs_f64(),
            fault.what
        )?;
    }
    if !restarted.is_empty() {
        writeln!(
            report,
            "roles that had exited on their own and were restarted: {}",
            restarted.join(", ")
        )?;
    }
    writeln!(
        report,
        "\nload generator (exit {load_status}):\n{load_report}"
    )?;
    writeln!(
        report,
        "invariant check (exit {check_code}):\n{check_output}"
    )?;
    writeln!(
        report,
        "suite took {:.0} s",
        started.elapsed().as_secs_f64()
    )?;
    println!("{report}");
    if check_code != 0 {
        dump_logs(&roles);
        bail!("an invariant failed (exit code {check_code})");
    }
    Ok(())
}
