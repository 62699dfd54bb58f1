//! Signing in through the `shopstream` binary, as an operator or auditor does.

use std::process::{Command, Output, Stdio};

use uuid::Uuid;

/// The password of every account [`sign_in`] creates.
pub const PASSWORD: &str = "a long enough password";

/// An account created with `shopstream accounts create` and signed in with
/// `shopstream login --print`.
#[derive(Debug, Clone)]
pub struct CliUser {
    /// The account id, recorded as `user:<id>`.
    pub account_id: Uuid,
    /// A unique email.
    pub email: String,
    /// The session token, for `SHOPSTREAM_TOKEN`.
    pub token: String,
}

impl CliUser {
    /// `user:<account id>`, as commands record the caller.
    pub fn actor(&self) -> String {
        format!("user:{}", self.account_id)
    }
}

/// Creates an account of `role` in the database at `database_url` and signs it in,
/// both through `binary` (pass `env!("CARGO_BIN_EXE_shopstream")`). Panics, with the
/// binary's stderr, if either step fails.
pub fn sign_in(binary: &str, database_url: &str, role: &str) -> CliUser {
    let email = format!("{role}-{}@test.example", Uuid::new_v4().simple());
    let created = run(
        binary,
        database_url,
        &["accounts", "create", "--email", &email, "--role", role],
    );
    // "created <role> account <email> (<uuid>)"
    let stdout = String::from_utf8_lossy(&created.stdout);
    let account_id = stdout
        .trim()
        .rsplit_once('(')
        .and_then(|(_, id)| id.strip_suffix(')'))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no account id in {stdout:?}"));
    let login = run(
        binary,
        database_url,
        &["login", "--email", &email, "--print"],
    );
    let token = String::from_utf8_lossy(&login.stdout).trim().to_owned();
    assert!(!token.is_empty(), "login printed no token");
    CliUser {
        account_id,
        email,
        token,
    }
}

fn run(binary: &str, database_url: &str, args: &[&str]) -> Output {
    let output = Command::new(binary)
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("SHOPSTREAM_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("running shopstream");
    assert!(
        output.status.success(),
        "shopstream {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
