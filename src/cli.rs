//! What every `shopstream` subcommand is: a clap type in the module that holds its
//! functions, implementing [`CliCommand`]. `main.rs` lists the types once and
//! delegates to them, so a new command is its own module's type and one line there.

use std::future::Future;

use crate::cli_auth::{Caller, Gate};
use crate::{Connections, LogFormat, Settings};

/// The exit code of a command that did what it was asked.
pub const SUCCESS: i32 = 0;

/// One subcommand (or group of them): how it logs, who may run it, and how it runs.
pub trait CliCommand {
    /// Its connection settings; `None` for a command that connects to nothing.
    fn settings(&self) -> Option<&Settings>;

    /// The log format: the settings', or text for a command without settings.
    fn log_format(&self) -> LogFormat {
        self.settings().map_or(LogFormat::Text, |s| s.log_format)
    }

    /// The role the process runs, naming the service in traces (`shopstream-<role>`).
    fn role(&self) -> &'static str {
        "cli"
    }

    /// The roles it needs, with its arguments for the record of a refusal; `None` for
    /// the roles a process runs and for bootstrapping (no session needed).
    fn gate(&self) -> Option<Gate> {
        None
    }

    /// Runs it on the invocation's connections, for `caller` (the signed-in caller when
    /// it has a gate), and returns the process exit code ([`SUCCESS`] or a code of its
    /// own, such as 2 for differences found).
    ///
    /// # Errors
    /// Whatever stopped it; the process then exits with code 1.
    // Not `Send`: `main` awaits it on its own thread, and the compiler cannot prove
    // sqlx's futures `Send` through a trait's opaque return type (its higher-ranked
    // lifetimes), though they are.
    fn run(
        self,
        conns: &Connections,
        caller: Option<&Caller>,
    ) -> impl Future<Output = anyhow::Result<i32>>;
}

/// The actor (`user:<uuid>`) of a command that passed its gate.
///
/// # Errors
/// When there is no caller: the command was run without its gate.
pub fn actor(caller: Option<&Caller>) -> anyhow::Result<&str> {
    caller
        .map(|c| c.actor.as_str())
        .ok_or_else(|| anyhow::anyhow!("this command needs a signed-in caller"))
}
