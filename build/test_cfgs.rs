//! Tells the test suite what this machine is set up for, so that a bare `cargo test` shows the tests it
//! cannot run as ignored (with the reason) instead of passing them without running: the PostgreSQL
//! variants need `LATCHKEY_TEST_POSTGRES_URL`, the Better Auth client test `LATCHKEY_REQUIRE_NODE=1`
//! (after `npm ci` in `tests/better-auth`). `.ci/run` sets both.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(latchkey_postgres_tests)");
    println!("cargo::rustc-check-cfg=cfg(latchkey_node_tests)");
    println!("cargo::rerun-if-env-changed=LATCHKEY_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-env-changed=LATCHKEY_REQUIRE_NODE");
    println!("cargo::rerun-if-changed=build/test_cfgs.rs");
    if std::env::var_os("LATCHKEY_TEST_POSTGRES_URL").is_some_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=latchkey_postgres_tests");
    }
    if std::env::var_os("LATCHKEY_REQUIRE_NODE").is_some_and(|value| value == "1") {
        println!("cargo::rustc-cfg=latchkey_node_tests");
    }
}
