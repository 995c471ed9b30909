//! Tells the test suite what this machine is set up for, so that a bare `cargo test` shows the tests it
//! cannot run as ignored (with the reason) instead of passing them without running: the PostgreSQL
//! variants need `LATCHKEY_TEST_POSTGRES_URL`, the Better Auth client test `LATCHKEY_REQUIRE_NODE=1`
//! (after `npm ci` in `tests/better-auth`), the browser test `chromium` and `chromedriver` on the `PATH`
//! when this ran, or `LATCHKEY_REQUIRE_BROWSER=1`. `.ci/run` sets all three.

use std::path::PathBuf;

/// `name` as found on the `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|file| file.is_file())
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(latchkey_postgres_tests)");
    println!("cargo::rustc-check-cfg=cfg(latchkey_node_tests)");
    println!("cargo::rustc-check-cfg=cfg(latchkey_browser_tests)");
    println!("cargo::rerun-if-env-changed=LATCHKEY_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-env-changed=LATCHKEY_REQUIRE_NODE");
    println!("cargo::rerun-if-env-changed=LATCHKEY_REQUIRE_BROWSER");
    println!("cargo::rerun-if-changed=build/test_cfgs.rs");
    if std::env::var_os("LATCHKEY_TEST_POSTGRES_URL").is_some_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=latchkey_postgres_tests");
    }
    if std::env::var_os("LATCHKEY_REQUIRE_NODE").is_some_and(|value| value == "1") {
        println!("cargo::rustc-cfg=latchkey_node_tests");
    }
    // The browser test runs wherever Chromium and its driver are installed. Their removal (or upgrade)
    // reruns this; installing them later does not, short of touching this file or setting the variable.
    let browser = [on_path("chromium"), on_path("chromedriver")];
    for found in browser.iter().flatten() {
        println!("cargo::rerun-if-changed={}", found.display());
    }
    let required = std::env::var_os("LATCHKEY_REQUIRE_BROWSER").is_some_and(|value| value == "1");
    if required || browser.iter().all(Option::is_some) {
        println!("cargo::rustc-cfg=latchkey_browser_tests");
    }
}
