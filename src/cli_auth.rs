//! Who runs an operator or auditor command, and whether their role allows it.
//!
//! `shopstream login` checks a password and stores an opaque session token in the
//! session file (or prints it for `SHOPSTREAM_TOKEN`); every operator and auditor
//! command then resolves its caller from that token against `accounts.cli_sessions`,
//! joined to the account's current role, before it does anything else. A refusal is
//! printed on one line, recorded in `audit.access_log` as `refused:<command>`, and
//! ends the process with [`REFUSED_EXIT_CODE`].
//!
//! This guards against mistakes and leaves an audit trail; it is not a security
//! boundary against anyone who holds the database or NATS credentials the commands
//! themselves use (ADR 0006).

use std::fmt;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use api::auth::{CliSessionStatus, Role};
use clap::Args;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::cli::{CliCommand, SUCCESS};
use crate::{Connections, Settings};

/// Roles allowed to run `projections`, `streams`, `dlq`, `sagas` and `replay`.
pub const OPERATORS: &[Role] = &[Role::Operator, Role::Admin];

/// Roles allowed to run every `audit` command.
pub const AUDITORS: &[Role] = &[Role::Auditor, Role::Admin];

/// The exit code of a refused command (`EX_NOPERM` in BSD's sysexits.h).
pub const REFUSED_EXIT_CODE: i32 = 77;

/// Where the session token is read from first.
pub const TOKEN_ENV: &str = "SHOPSTREAM_TOKEN";

/// Overrides the session file's path.
pub const SESSION_FILE_ENV: &str = "SHOPSTREAM_SESSION_FILE";

/// Where `login` reads the password from first.
pub const PASSWORD_ENV: &str = "SHOPSTREAM_PASSWORD";

/// The caller of an allowed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The signed-in account.
    pub account_id: Uuid,
    /// Its role now.
    pub role: Role,
    /// `user:<account id>`: what the command records as who acted.
    pub actor: String,
}

/// A command that needs a signed-in caller with one of some roles.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The command as typed without its arguments, such as `dlq retry`.
    pub command: String,
    /// The roles that may run it.
    pub allowed: &'static [Role],
    /// Its arguments (ids, filters, reasons; never a token or a password), recorded
    /// with a refusal.
    pub arguments: Value,
}

impl Gate {
    /// An operator command ([`OPERATORS`]).
    pub fn operator(command: impl Into<String>, arguments: Value) -> Self {
        Self {
            command: command.into(),
            allowed: OPERATORS,
            arguments,
        }
    }

    /// An auditor command ([`AUDITORS`]).
    pub fn auditor(command: impl Into<String>, arguments: Value) -> Self {
        Self {
            command: command.into(),
            allowed: AUDITORS,
            arguments,
        }
    }
}

/// Why a caller was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Neither `SHOPSTREAM_TOKEN` nor a session file.
    NoToken,
    /// A token no session was started with.
    UnknownToken,
    /// A session past its lifetime.
    Expired,
    /// A session ended by `shopstream logout`.
    Revoked,
    /// Signed in, with a role the command does not allow.
    Role(Role),
}

impl Refusal {
    fn caller(&self) -> String {
        match self {
            Refusal::NoToken => "not signed in (no session: run `shopstream login`)".to_owned(),
            Refusal::UnknownToken => "not signed in (unknown session token)".to_owned(),
            Refusal::Expired => {
                "not signed in (session expired: run `shopstream login`)".to_owned()
            }
            Refusal::Revoked => "not signed in (session ended by logout)".to_owned(),
            Refusal::Role(role) => format!("role {role}"),
        }
    }
}

/// A refused command; `main` prints it and exits with [`REFUSED_EXIT_CODE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The command, such as `dlq retry`.
    pub command: String,
    /// Why.
    pub refusal: Refusal,
    /// Who may run it.
    pub allowed: &'static [Role],
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let allowed: Vec<&str> = self.allowed.iter().map(|r| r.as_str()).collect();
        write!(
            f,
            "refused: `shopstream {}` needs role {}; caller: {}",
            self.command,
            allowed.join(" or "),
            self.refusal.caller()
        )
    }
}

impl std::error::Error for Refused {}

/// Checks the caller against `gate` on the invocation's database (connected and
/// migrated, as every command does, and then used by the command itself); see
/// [`require`].
///
/// # Errors
/// [`Refused`] (inside the `anyhow::Error`) when the caller may not run the command;
/// otherwise PostgreSQL unreachable or an unreadable session file.
pub async fn check(conns: &Connections, gate: &Gate) -> anyhow::Result<Caller> {
    require(conns.db().await?, gate).await
}

/// The caller of the command `gate` describes, if their role allows it.
///
/// The token comes from `SHOPSTREAM_TOKEN`, else the session file. A refusal is
/// recorded in `audit.access_log` (action `refused:<command>`, actor `user:<uuid>` for
/// a signed-in caller with the wrong role, else `anonymous`, and the gate's arguments
/// with `refused_because`) before it is returned; nothing else is written.
///
/// # Errors
/// [`Refused`] (inside the `anyhow::Error`) when the caller may not run the command;
/// otherwise PostgreSQL failing or an unreadable session file.
pub async fn require(pool: &PgPool, gate: &Gate) -> anyhow::Result<Caller> {
    let refusal = match current_token()? {
        None => Refusal::NoToken,
        Some(token) => match api::auth::cli_session_status(pool, &token)
            .await
            .context("looking up the CLI session")?
        {
            CliSessionStatus::Active(principal) if gate.allowed.contains(&principal.role) => {
                return Ok(Caller {
                    account_id: principal.account_id,
                    role: principal.role,
                    actor: principal.actor().to_string(),
                });
            }
            CliSessionStatus::Active(principal) => {
                record_refusal(
                    pool,
                    gate,
                    &principal.actor().to_string(),
                    &Refusal::Role(principal.role),
                )
                .await?;
                return Err(refused(gate, Refusal::Role(principal.role)));
            }
            CliSessionStatus::Expired { .. } => Refusal::Expired,
            CliSessionStatus::Revoked { .. } => Refusal::Revoked,
            CliSessionStatus::Unknown => Refusal::UnknownToken,
        },
    };
    // Whoever holds a dead or unknown token is not proven to be its account.
    record_refusal(pool, gate, "anonymous", &refusal).await?;
    Err(refused(gate, refusal))
}

fn refused(gate: &Gate, refusal: Refusal) -> anyhow::Error {
    anyhow::Error::new(Refused {
        command: gate.command.clone(),
        refusal,
        allowed: gate.allowed,
    })
}

async fn record_refusal(
    pool: &PgPool,
    gate: &Gate,
    actor: &str,
    refusal: &Refusal,
) -> anyhow::Result<()> {
    let mut arguments = match &gate.arguments {
        Value::Object(map) => map.clone(),
        Value::Null => serde_json::Map::new(),
        other => serde_json::Map::from_iter([("arguments".to_owned(), other.clone())]),
    };
    arguments.insert(
        "refused_because".to_owned(),
        Value::String(refusal.caller()),
    );
    api::audit_log::record(
        pool,
        &api::audit_log::Access {
            actor,
            action: &format!("refused:{}", gate.command),
            target_type: None,
            target_id: None,
            arguments: Value::Object(arguments),
        },
    )
    .await
    .context("recording the refusal in audit.access_log")
}

/// The token of the current session: `SHOPSTREAM_TOKEN`, else the session file's, if
/// either exists.
///
/// # Errors
/// When the session file exists but cannot be read.
pub fn current_token() -> anyhow::Result<Option<String>> {
    if let Some(token) = std::env::var(TOKEN_ENV)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(token));
    }
    let path = session_file()?;
    match std::fs::read_to_string(&path) {
        Ok(token) => Ok(Some(token.trim().to_owned()).filter(|t| !t.is_empty())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => {
            Err(error).with_context(|| format!("reading the session file {}", path.display()))
        }
    }
}

/// `SHOPSTREAM_SESSION_FILE`, else `$XDG_CONFIG_HOME/shopstream/session`, else
/// `~/.config/shopstream/session`.
///
/// # Errors
/// When none of those variables (nor `HOME`) is set.
pub fn session_file() -> anyhow::Result<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| !p.as_os_str().is_empty())
    };
    if let Some(path) = var(SESSION_FILE_ENV) {
        return Ok(path);
    }
    // The XDG spec ignores a relative XDG_CONFIG_HOME.
    if let Some(config) = var("XDG_CONFIG_HOME").filter(|p| p.is_absolute()) {
        return Ok(config.join("shopstream").join("session"));
    }
    match var("HOME") {
        Some(home) => Ok(home.join(".config").join("shopstream").join("session")),
        None => bail!("no session file: set {SESSION_FILE_ENV}, XDG_CONFIG_HOME or HOME"),
    }
}

/// `shopstream login`: sign in for the operator and auditor commands.
#[derive(Debug, Args)]
pub struct LoginCommand {
    #[command(flatten)]
    pub login: Login,
    #[command(flatten)]
    pub settings: Settings,
}

impl CliCommand for LoginCommand {
    fn settings(&self) -> Option<&Settings> {
        Some(&self.settings)
    }

    async fn run(self, conns: &Connections, _: Option<&Caller>) -> anyhow::Result<i32> {
        login(conns, &self.login).await?;
        Ok(SUCCESS)
    }
}

/// `shopstream logout`: end the current session.
#[derive(Debug, Args)]
pub struct LogoutCommand {
    #[command(flatten)]
    pub settings: Settings,
}

impl CliCommand for LogoutCommand {
    fn settings(&self) -> Option<&Settings> {
        Some(&self.settings)
    }

    async fn run(self, conns: &Connections, _: Option<&Caller>) -> anyhow::Result<i32> {
        logout(conns).await?;
        Ok(SUCCESS)
    }
}

/// How `shopstream login` gets its password and where it puts the token.
#[derive(Debug, Clone, Args)]
pub struct Login {
    /// The account's email.
    #[arg(long)]
    pub email: String,
    /// Read the password from the first line of standard input (otherwise from
    /// SHOPSTREAM_PASSWORD, else a prompt without echo).
    #[arg(long)]
    pub password_stdin: bool,
    /// How long the session lives, as 90s, 30m, 12h or 7d (at most 30d).
    #[arg(long, default_value = "12h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Print the token (for `export SHOPSTREAM_TOKEN=...`) instead of writing the
    /// session file.
    #[arg(long)]
    pub print: bool,
}

/// `shopstream login`: checks the password like the API's login and starts a CLI
/// session, written to the session file (mode 0600) or printed.
///
/// # Errors
/// A wrong email or password (one message for both), no password to read, an
/// unwritable session file, or PostgreSQL unreachable.
pub async fn login(conns: &Connections, login: &Login) -> anyhow::Result<()> {
    let password = read_password(login)?;
    let db = conns.db().await?;
    let session = crate::api_role::cli_accounts(db.clone())?
        .start_cli_session(&login.email, &password, login.ttl)
        .await
        .map_err(|error| match error {
            api::auth::AuthError::InvalidCredentials => {
                anyhow::anyhow!("login refused: invalid email or password")
            }
            other => anyhow::Error::new(other).context("starting the CLI session"),
        })?;
    if login.print {
        println!("{}", session.token);
        return Ok(());
    }
    let path = session_file()?;
    write_session_file(&path, &session.token)?;
    println!(
        "signed in as {} ({}) until {}; session in {}",
        session.account.email,
        session.account.role,
        session.expires_at.to_rfc3339(),
        path.display()
    );
    Ok(())
}

/// `shopstream logout`: revokes the current session (`SHOPSTREAM_TOKEN`, else the
/// session file's) and removes the session file if it holds that token.
///
/// # Errors
/// An unreadable or unremovable session file, or PostgreSQL unreachable.
pub async fn logout(conns: &Connections) -> anyhow::Result<()> {
    let Some(token) = current_token()? else {
        println!("not signed in");
        return Ok(());
    };
    let db = conns.db().await?;
    let ended = api::auth::end_cli_session(db, &token)
        .await
        .context("revoking the CLI session")?;
    // With SHOPSTREAM_TOKEN set and no HOME there is no file to consider.
    if let Ok(path) = session_file() {
        let in_file = std::fs::read_to_string(&path).is_ok_and(|t| t.trim() == token);
        if in_file {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing the session file {}", path.display()))?;
        }
    }
    println!(
        "{}",
        if ended {
            "signed out"
        } else {
            "the session had already ended"
        }
    );
    Ok(())
}

fn read_password(login: &Login) -> anyhow::Result<String> {
    if let Ok(password) = std::env::var(PASSWORD_ENV) {
        return Ok(password);
    }
    if login.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let term = console::Term::stderr();
    if !term.is_term() {
        bail!("no password: set {PASSWORD_ENV} or pass --password-stdin");
    }
    write!(&term, "password for {}: ", login.email)?;
    term.read_secure_line().context("reading the password")
}

fn write_session_file(path: &Path, token: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)
            .with_context(|| format!("creating the directory {}", dir.display()))?;
    }
    write_private(path, token)
        .with_context(|| format!("writing the session file {}", path.display()))
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only to a new file; an old one may have been readable by others.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(file, "{token}")?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{token}\n"))
}

/// Parses a session lifetime: a positive whole number with `s`, `m`, `h` or `d`, such
/// as `12h`, at most 30 days.
///
/// # Errors
/// Anything else, as a message for clap.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    const MAX_SECONDS: u64 = 30 * 24 * 3600;
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "`{text}`: expected a number with s, m, h or d, as 12h"
            ))
        }
    };
    let seconds = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_seconds))
        .filter(|s| (1..=MAX_SECONDS).contains(s))
        .ok_or_else(|| format!("`{text}`: expected between 1s and 30d"))?;
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests;
