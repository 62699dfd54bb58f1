//! The fault suite (issue 7): the whole system as separate processes on this machine,
//! under load, with faults injected, then the invariants checked against the load
//! generator's own record of acknowledged requests.
//!
//! It starts a three-node NATS cluster on loopback ports (streams R3, `sync_interval:
//! always`), a private PostgreSQL, and the roles replicated: `serve` ×2, `project` ×2,
//! `saga` ×2. `shopstream-loadgen` drives shopping traffic through both APIs while a
//! fault is injected every `FAULT_INTERVAL_SECS`, cycling through:
//!
//! - SIGKILL of each role in turn (an API, a projector, a saga replica), restarted a
//!   second later;
//! - SIGKILL of one NATS node (each in turn), restarted three seconds later;
//! - PostgreSQL crashed (SIGKILL of every server process) and started again;
//! - SIGSTOP of a saga replica past its ack wait, then SIGCONT.
//!
//! When the load ends, every role is brought back and `shopstream-loadgen check
//! --verify-read-models` checks: no acknowledged order lost, every order terminal, no
//! oversold or stranded stock, payments balance, no duplicate notification, every read
//! model equal to the log. It exits non-zero when any invariant fails.
//!
//! Run: `source scripts/env.sh && cargo bench --bench faults` (also `scripts/fault-suite.sh`).
//! Settings: `FAULT_SECONDS` (load duration, default 60), `FAULT_RATE` (requests/s,
//! default 60), `FAULT_INTERVAL_SECS` (default 4).

mod system;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use system::{env_or, Deployment, ADMIN_EMAIL, ADMIN_PASSWORD};
use testkit::{NatsCluster, PostgresServer};

const ACK_WAIT_MS: u64 = 3_000;

/// What the suite did to the system, for the report.
struct Fault {
    at: Duration,
    what: String,
    took: Duration,
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
    system::migrate(&common)?;
    let deployment = Deployment::start(&common, work.path(), 2, 2).await?;
    let urls = deployment.graphql_urls();
    let mut roles = deployment.roles;
    system::create_admin(&common)?;

    let record = work.path().join("record.jsonl");
    let loadgen_out = work.path().join("loadgen.out");
    let loadgen_bin = system::loadgen();
    let mut loadgen = Command::new(&loadgen_bin)
        .args([
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
        .context("starting shopstream-loadgen")?;
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

    let (check_code, check_output) = system::run_binary(
        &loadgen_bin,
        &[
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
        system::dump_logs(&roles);
        bail!("an invariant failed (exit code {check_code})");
    }
    Ok(())
}
