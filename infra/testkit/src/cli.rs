//! Signing in through the `shopstream` binary, as an operator or auditor does; and
//! finding a workspace binary that is not the caller's own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

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
pub fn sign_in(binary: impl AsRef<Path>, database_url: &str, role: &str) -> CliUser {
    let binary = binary.as_ref();
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

fn run(binary: &Path, database_url: &str, args: &[&str]) -> Output {
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

/// The path of binary `bin` of workspace package `package`, built (at most once per
/// process) with the profile and into the target directory of the running test or
/// bench. Cargo sets `CARGO_BIN_EXE_<name>` only for the binaries of a test's own
/// package, so a test that runs two binaries (`shopstream-loadgen` against the
/// `shopstream` roles) finds the other one here; building it first means a test run of
/// one package never runs a stale binary of another. Panics, with cargo's output, if
/// the build fails.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    // Held while building: concurrent tests wait for one build instead of racing.
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = built.get(bin) {
        return path.clone();
    }
    // A test or bench runs from `<target>/<profile dir>/deps/`.
    let exe = std::env::current_exe().expect("the running test's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not under <target>/<profile>/deps", exe.display()));
    let target_dir = profile_dir.parent().expect("the target directory");
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => panic!("no profile directory in {}", exe.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--package",
            package,
            "--bin",
            bin,
            "--profile",
        ])
        .arg(profile)
        .arg("--target-dir")
        .arg(target_dir)
        // Any directory of the workspace: cargo finds its root.
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .expect("running cargo build");
    assert!(
        output.status.success(),
        "cargo build --package {package} --bin {bin}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = profile_dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "cargo built no {}", path.display());
    built.insert(bin.to_owned(), path.clone());
    path
}
