//! Accounts, passwords and sessions for the GraphQL API.
//!
//! - [`Accounts`]: registration, login, refresh-token rotation and logout against
//!   PostgreSQL (`accounts.accounts`, `accounts.refresh_tokens`).
//! - Access tokens are short-lived HS256 JWTs checked without I/O by
//!   [`Accounts::verify`]; refresh tokens are opaque random strings stored only as
//!   sha256 hashes, rotated on every use, and grouped in families so that a stolen,
//!   replayed token revokes the whole login.
//! - Passwords are argon2id PHC strings, hashed and verified off the async runtime.
//! - The `shopstream` command line signs in with [`Accounts::start_cli_session`]: an
//!   opaque token stored only as its sha256 hash in `accounts.cli_sessions`, looked up
//!   with the account's current role on every command ([`cli_session_status`]).
//!
//! This module decides who is calling; what a [`Role`] may do is the schema's business.

mod accounts;
mod cli_sessions;
mod config;
mod error;
mod password;
mod role;
mod tokens;

pub use accounts::{Account, Accounts, Session};
pub use cli_sessions::{cli_session_status, end_cli_session, CliSession, CliSessionStatus};
pub use config::AuthConfig;
pub use error::AuthError;
pub use password::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
pub use role::{Principal, Role, UnknownRole};
