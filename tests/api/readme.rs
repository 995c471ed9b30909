//! The README's curl walk-through, run as a reader would: its shell blocks in order, pasted into one
//! shell, against the real binary on a fresh database. Needs `bash`, `curl` and `jq` (`.ci/run` installs
//! them); without them the test says so and passes.

use std::{
    net::TcpListener,
    process::{Command, Stdio},
};

/// The shell blocks of the walk-through sections (the one starting the server excluded: the test runs
/// the server itself, with the same master credentials).
fn walk_through_blocks() -> String {
    let readme = include_str!("../../README.md");
    let start = readme.find("## A walk through with curl").expect("walk-through section");
    let end = readme.find("## Endpoints").expect("endpoints section");
    let mut script = String::new();
    for (index, block) in readme[start..end].split("```").enumerate() {
        if index % 2 == 1 {
            if let Some(body) = block.strip_prefix("sh\n") {
                if !body.contains("cargo run") {
                    script.push_str(body);
                    script.push('\n');
                }
            }
        }
    }
    script
}

fn available(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

#[test]
fn the_readme_walk_through_runs_in_order_as_pasted() {
    if let Some(missing) = ["bash", "curl", "jq"].into_iter().find(|program| !available(program)) {
        eprintln!("SKIPPED the README walk-through: `{missing}` is not installed");
        return;
    }
    let script = walk_through_blocks();
    assert!(script.contains("B=http://localhost:8080"), "the walk-through starts by naming the server");
    // The README's server listens on 8080; this one on a free port, under the same base-URL rule.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://localhost:{port}");
    let script = script.replace("B=http://localhost:8080", &format!("B={base}"));

    let dir = tempfile::tempdir().unwrap();
    let mut command = crate::cli::latchkey(dir.path());
    command
        .env("LATCHKEY_LISTEN", format!("127.0.0.1:{port}"))
        .env("LATCHKEY_BASE_URL", &base)
        .env("MASTER_USERNAME", "admin")
        .env("MASTER_PASSWORD", "a long master password");
    let _server = crate::cli::Server::start(command);

    // Each answer on its own line, so the checks below can read them.
    let prelude = "set -eu\ncurl() { command curl --max-time 10 \"$@\"; echo; }\n";
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .current_dir(dir.path())
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the walk-through failed:\n{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    for expected in [
        "{\"success\":true}",
        "null",
        "x-auth-method: extension-token",
        "x-auth-method: oauth",
        "x-auth-scopes: read:orders",
        "{\"token_type\":\"Bearer\",\"expires_in\":86400,\"scope\":\"openid profile email offline_access\"}",
        "200",
        "401",
        "{\"revoked\":true}",
        "{\"deleted\":true}",
        "{\"users\":[]}",
    ] {
        assert!(lines.iter().any(|line| line.trim() == expected), "no `{expected}` in:\n{stdout}");
    }
    assert!(stdout.contains("\"valid\":true,\"claims\""), "the extension token verifies:\n{stdout}");
    assert!(stdout.contains("\"externalId\":\"cust-42\""), "/v1/me answers:\n{stdout}");
    assert!(stdout.contains("INVALID_TOKEN"), "the revoked token is refused:\n{stdout}");
    assert!(stdout.contains("\"apiKey\":\"lkc_"), "{stdout}");
    assert!(stdout.contains("\"email\":\"alice@example.com\""), "/userinfo answers:\n{stdout}");
    assert!(stdout.contains("\"authorization_endpoint\":"), "discovery answers:\n{stdout}");
    // The token handler: configured (never the secret), login redirects to /authorize, a foreign returnTo
    // is refused, and nobody is signed in yet.
    assert!(stdout.contains("\"redirectUri\":") && stdout.contains("\"hasClientSecret\":true"), "{stdout}");
    assert!(lines.iter().any(|line| line.starts_with("302 http") && line.contains("/authorize?")), "{stdout}");
    assert!(lines.iter().any(|line| line.trim() == "400"), "{stdout}");
    assert!(stdout.trim_end().ends_with("{\"authenticated\":false}"), "the token handler answers last:\n{stdout}");
    // Every other answer is a success: no error code anywhere else.
    let errors: Vec<&&str> =
        lines.iter().filter(|line| line.contains("\"code\":") && !line.contains("INVALID_TOKEN")).collect();
    assert!(errors.is_empty(), "unexpected errors: {errors:#?}\n{stdout}");
}
