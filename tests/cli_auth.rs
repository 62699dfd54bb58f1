//! Signing in on the command line and the role check of every operator and auditor
//! command, through the real binary: who may run what, refusals (exit code 77,
//! recorded, nothing else changed), logout, expiry and role changes.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use testkit::cli::{CliUser, PASSWORD};
use testkit::{NatsServer, TestDatabase};

/// The binary with the test's servers, and no session unless the test gives one: no
/// `SHOPSTREAM_TOKEN` from the environment, and a session file that does not exist.
fn shopstream(nats: &NatsServer, db: &TestDatabase, session_file: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shopstream"));
    command
        .env("NATS_URL", nats.url())
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .env("SHOPSTREAM_SESSION_FILE", session_file)
        .env_remove("SHOPSTREAM_TOKEN")
        .env_remove("SHOPSTREAM_PASSWORD")
        .stdin(Stdio::null());
    command
}

struct Env {
    nats: NatsServer,
    db: TestDatabase,
    dir: tempfile::TempDir,
}

impl Env {
    async fn start() -> Self {
        Self {
            nats: NatsServer::start(),
            db: TestDatabase::create().await.unwrap(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn session_file(&self) -> std::path::PathBuf {
        self.dir
            .path()
            .join("config")
            .join("shopstream")
            .join("session")
    }

    fn command(&self) -> Command {
        shopstream(&self.nats, &self.db, &self.session_file())
    }

    /// `args` with the session file's token, if any.
    fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .expect("running shopstream")
    }

    /// `args` as `user`, by `SHOPSTREAM_TOKEN`.
    fn run_as(&self, user: &CliUser, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .env("SHOPSTREAM_TOKEN", &user.token)
            .output()
            .expect("running shopstream")
    }

    fn sign_in(&self, role: &str) -> CliUser {
        testkit::cli::sign_in(env!("CARGO_BIN_EXE_shopstream"), &self.db.url, role)
    }

    /// The newest access-log rows: (actor, action, arguments).
    async fn access_log(&self) -> Vec<(String, String, Value)> {
        sqlx::query_as("SELECT actor, action, arguments FROM audit.access_log ORDER BY access_id")
            .fetch_all(&self.db.pool)
            .await
            .unwrap()
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_refused(output: &Output, command: &str, caller: &str) {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(77), "{message}");
    assert!(
        message.contains(&format!("`shopstream {command}`")) && message.contains(caller),
        "{message}"
    );
    assert_eq!(message.trim().lines().count(), 1, "{message}");
}

#[tokio::test]
async fn login_writes_a_private_session_file_that_an_auditor_command_then_runs_as() {
    let env = Env::start().await;
    let created = env
        .command()
        .args([
            "accounts",
            "create",
            "--email",
            "Ann@Audit.example",
            "--role",
            "auditor",
        ])
        .env("SHOPSTREAM_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", stderr(&created));
    let account_id: uuid::Uuid = sqlx::query_scalar("SELECT account_id FROM accounts.accounts")
        .fetch_one(&env.db.pool)
        .await
        .unwrap();

    let login = env
        .command()
        .args(["login", "--email", "ann@audit.example"])
        .env("SHOPSTREAM_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(login.status.success(), "{}", stderr(&login));
    assert!(
        stdout(&login).contains("signed in as ann@audit.example (auditor)"),
        "{}",
        stdout(&login)
    );
    let token = std::fs::read_to_string(env.session_file()).unwrap();
    let token = token.trim();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.session_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Only the token's hash is stored, and the session lives 12 hours by default.
    let (stored, lifetime): (i64, f64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE token_hash = sha256(convert_to($1, 'UTF8'))),
                max(extract(epoch FROM expires_at - created_at))::float8
         FROM accounts.cli_sessions",
    )
    .bind(token)
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(stored, 1);
    assert!((lifetime - 12.0 * 3600.0).abs() < 60.0, "{lifetime}");

    let access = env.run(&["audit", "access", "-j"]);
    assert!(access.status.success(), "{}", stderr(&access));
    let rows: Value = serde_json::from_str(&stdout(&access)).unwrap();
    assert_eq!(rows[0]["actor"], format!("user:{account_id}"));
    assert_eq!(rows[0]["action"], "access");

    let logout = env.run(&["logout"]);
    assert!(logout.status.success(), "{}", stderr(&logout));
    assert!(!env.session_file().exists());
    let revoked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM accounts.cli_sessions WHERE revoked_at IS NOT NULL",
    )
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(revoked, 1);
    assert_refused(
        &env.run(&["audit", "access"]),
        "audit access",
        "not signed in",
    );
}

#[tokio::test]
async fn login_reads_the_password_from_stdin_and_prints_the_token() {
    let env = Env::start().await;
    let user = env.sign_in("operator");
    let mut child = env
        .command()
        .args([
            "login",
            "--email",
            &user.email,
            "--password-stdin",
            "--print",
            "--ttl",
            "30m",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{PASSWORD}").unwrap();
    }
    let login = child.wait_with_output().unwrap();
    assert!(login.status.success(), "{}", stderr(&login));
    let token = stdout(&login).trim().to_owned();
    assert_ne!(token, user.token);
    assert!(!env.session_file().exists(), "--print writes no file");
    let listed = env.run_as(
        &CliUser {
            token,
            ..user.clone()
        },
        &["dlq", "list", "-j"],
    );
    assert!(listed.status.success(), "{}", stderr(&listed));

    // Neither SHOPSTREAM_PASSWORD, nor --password-stdin, nor a terminal: refused.
    let no_password = env.run(&["login", "--email", &user.email]);
    assert_eq!(no_password.status.code(), Some(1));
    assert!(
        stderr(&no_password).contains("--password-stdin"),
        "{}",
        stderr(&no_password)
    );
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_are_refused_alike_and_start_no_session() {
    let env = Env::start().await;
    let user = env.sign_in("operator");
    let sessions = env.count("accounts.cli_sessions").await;
    let login = |email: &str, password: &str| {
        env.command()
            .args(["login", "--email", email, "--print"])
            .env("SHOPSTREAM_PASSWORD", password)
            .output()
            .unwrap()
    };
    let wrong = login(&user.email, "not the password at all");
    let unknown = login("nobody@test.example", PASSWORD);
    for output in [&wrong, &unknown] {
        assert_eq!(output.status.code(), Some(1));
        assert!(stdout(output).is_empty());
        assert!(
            stderr(output).contains("invalid email or password"),
            "{}",
            stderr(output)
        );
    }
    assert_eq!(stderr(&wrong), stderr(&unknown));
    assert_eq!(env.count("accounts.cli_sessions").await, sessions);
}

#[tokio::test]
async fn without_a_session_every_operator_and_auditor_command_is_refused_as_anonymous() {
    let env = Env::start().await;
    let commands: [(&str, &[&str]); 6] = [
        ("projections status", &["projections", "status"]),
        ("streams info", &["streams", "info"]),
        ("dlq list", &["dlq", "list", "--consumer", "inventory"]),
        ("sagas list", &["sagas", "list"]),
        ("audit verify", &["audit", "verify"]),
        ("audit access", &["audit", "access"]),
    ];
    for (command, args) in commands {
        let output = env.run(args);
        assert_refused(&output, command, "not signed in (no session");
        assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    }
    let log = env.access_log().await;
    let recorded: Vec<(String, String)> = log
        .iter()
        .map(|(actor, action, _)| (actor.clone(), action.clone()))
        .collect();
    let expected: Vec<(String, String)> = commands
        .iter()
        .map(|(command, _)| ("anonymous".to_owned(), format!("refused:{command}")))
        .collect();
    assert_eq!(recorded, expected);
    assert_eq!(log[2].2["consumer"], "inventory");

    // A token no session was started with is no better.
    let forged = CliUser {
        account_id: uuid::Uuid::new_v4(),
        email: String::new(),
        token: "bm90IGEgcmVhbCB0b2tlbg".to_owned(),
    };
    let output = env.run_as(&forged, &["dlq", "list"]);
    assert_refused(&output, "dlq list", "unknown session token");
}

#[tokio::test]
async fn an_operator_running_audit_history_is_refused_and_recorded() {
    let env = Env::start().await;
    let operator = env.sign_in("operator");
    let output = env.run_as(
        &operator,
        &["audit", "history", "order", "o-1", "--limit", "5"],
    );
    assert_refused(&output, "audit history", "caller: role operator");
    assert!(stderr(&output).contains("needs role auditor or admin"));
    let log = env.access_log().await;
    assert_eq!(log.len(), 1, "only the refusal: {log:?}");
    let (actor, action, arguments) = &log[0];
    assert_eq!(actor, &operator.actor());
    assert_eq!(action, "refused:audit history");
    assert_eq!(arguments["aggregate_id"], "o-1");
    assert_eq!(arguments["limit"], 5);
}

#[tokio::test]
async fn a_logged_out_or_expired_session_is_refused() {
    let env = Env::start().await;
    let operator = env.sign_in("operator");
    let allowed = env.run_as(&operator, &["dlq", "list"]);
    assert!(allowed.status.success(), "{}", stderr(&allowed));

    let logout = env.run_as(&operator, &["logout"]);
    assert!(logout.status.success(), "{}", stderr(&logout));
    assert_refused(
        &env.run_as(&operator, &["dlq", "list"]),
        "dlq list",
        "session ended by logout",
    );

    let auditor = env.sign_in("auditor");
    assert!(env.run_as(&auditor, &["audit", "access"]).status.success());
    sqlx::query(
        "UPDATE accounts.cli_sessions
         SET created_at = now() - interval '13 hours', expires_at = now() - interval '1 hour'
         WHERE account_id = $1",
    )
    .bind(auditor.account_id)
    .execute(&env.db.pool)
    .await
    .unwrap();
    assert_refused(
        &env.run_as(&auditor, &["audit", "access"]),
        "audit access",
        "session expired",
    );
    let actors: Vec<(String, String)> = env
        .access_log()
        .await
        .into_iter()
        .filter(|(_, action, _)| action.starts_with("refused:"))
        .map(|(actor, action, _)| (actor, action))
        .collect();
    assert_eq!(
        actors,
        [
            ("anonymous".to_owned(), "refused:dlq list".to_owned()),
            ("anonymous".to_owned(), "refused:audit access".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_role_changed_after_login_applies_to_the_next_command() {
    let env = Env::start().await;
    let user = env.sign_in("operator");
    assert!(env.run_as(&user, &["dlq", "list"]).status.success());
    assert_refused(
        &env.run_as(&user, &["audit", "access"]),
        "audit access",
        "caller: role operator",
    );

    let set_role = |role: &'static str| {
        sqlx::query("UPDATE accounts.accounts SET role = $1 WHERE account_id = $2")
            .bind(role)
            .bind(user.account_id)
            .execute(&env.db.pool)
    };
    set_role("customer").await.unwrap();
    assert_refused(
        &env.run_as(&user, &["dlq", "list"]),
        "dlq list",
        "caller: role customer",
    );

    set_role("admin").await.unwrap();
    let dlq = env.run_as(&user, &["dlq", "list"]);
    assert!(dlq.status.success(), "{}", stderr(&dlq));
    let audit = env.run_as(&user, &["audit", "access", "-j"]);
    assert!(audit.status.success(), "{}", stderr(&audit));
    let rows: Value = serde_json::from_str(&stdout(&audit)).unwrap();
    assert_eq!(rows[0]["actor"], user.actor());
}
