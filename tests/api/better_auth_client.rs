//! Better Auth's own client plugins (`organizationClient`, `apiKeyClient`, from npm) against the real
//! server: `tests/better-auth/client.mjs` signs up, manages organizations, invitations and API keys and
//! checks every answer and error code those plugins expect.
//!
//! Needs `node` and `npm ci` run in `tests/better-auth`, and runs when `LATCHKEY_REQUIRE_NODE=1` (CI sets
//! it); otherwise a bare `cargo test` lists it as ignored. Run anyway (`-- --ignored`) without Node, it
//! prints why and passes, unless `LATCHKEY_REQUIRE_NODE=1`, in which case it fails.

use std::{path::PathBuf, process::Stdio, time::Duration};

use crate::helpers::*;

/// The Better Auth clients on each backend (not `both_backends!`: these need Node as well).
mod better_auths_organization_and_api_key_clients_work_against_latchkey {
    use crate::helpers::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(latchkey_node_tests), ignore = "needs Node: npm ci in tests/better-auth, LATCHKEY_REQUIRE_NODE=1")]
    async fn sqlite() {
        super::better_auths_organization_and_api_key_clients_work_against_latchkey(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        any(not(latchkey_node_tests), not(latchkey_postgres_tests)),
        ignore = "needs Node and PostgreSQL: LATCHKEY_REQUIRE_NODE=1, LATCHKEY_TEST_POSTGRES_URL"
    )]
    async fn postgres() {
        super::better_auths_organization_and_api_key_clients_work_against_latchkey(Backend::Postgres).await
    }
}

/// How long the script may take (it makes about a hundred requests).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("better-auth")
}

/// `Some(reason)` when the Node client cannot run here.
async fn missing_prerequisite() -> Option<String> {
    let node = tokio::process::Command::new("node").arg("--version").output().await;
    match node {
        Ok(output) if output.status.success() => {}
        _ => return Some("`node` is not installed".into()),
    }
    let installed = client_dir().join("node_modules").join("better-auth");
    if !installed.is_dir() {
        return Some(format!("{} is missing: run `npm ci` in tests/better-auth", installed.display()));
    }
    None
}

async fn better_auths_organization_and_api_key_clients_work_against_latchkey(backend: Backend) {
    if let Some(reason) = missing_prerequisite().await {
        if std::env::var("LATCHKEY_REQUIRE_NODE").is_ok_and(|v| v == "1") {
            panic!("LATCHKEY_REQUIRE_NODE=1 but {reason}");
        }
        eprintln!("SKIPPED the Better Auth client test: {reason} (set LATCHKEY_REQUIRE_NODE=1 to fail instead)");
        return;
    }
    let Some(app) = spawn_app(backend).await else { return };

    let run = tokio::process::Command::new("node")
        .arg("client.mjs")
        .current_dir(client_dir())
        .env("LATCHKEY_BASE_URL", &app.address)
        // The server trusts its base URL's origin, not the address it happens to listen on.
        .env("LATCHKEY_ORIGIN", ORIGIN)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, run)
        .await
        .expect("the Better Auth client script finishes within its timeout")
        .expect("node starts");

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "client.mjs failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("checks passed"), "{stdout}\n{stderr}");
}
