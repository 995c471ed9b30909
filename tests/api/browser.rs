//! What the browser tests share: a free port, Chromium and chromedriver found on the `PATH`, and a
//! chromedriver of a test's own that hands out headless Chromium sessions and is killed, with every
//! browser it started, when dropped.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

/// How long chromedriver may take to answer.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(30);

/// A free port on 127.0.0.1 (bound, read and released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local address").port()
}

/// Chromium and chromedriver on the `PATH`, or why not.
pub fn browser_binaries() -> Result<(PathBuf, PathBuf), String> {
    let find = |name: &str| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|file| file.is_file())
    };
    match (find("chromium"), find("chromedriver")) {
        (Some(chromium), Some(driver)) => Ok((chromium, driver)),
        (chromium, driver) => {
            let missing = [("chromium", chromium.is_none()), ("chromedriver", driver.is_none())];
            let missing: Vec<_> = missing.iter().filter(|(_, gone)| *gone).map(|(name, _)| *name).collect();
            Err(format!("{} not on the PATH (apt-get install chromium chromium-driver)", missing.join(" and ")))
        }
    }
}

/// Chromium and chromedriver for the test `what`, or `None` after printing why it is skipped; panics
/// instead when `LATCHKEY_REQUIRE_BROWSER=1` (CI).
pub fn browser_or_skip(what: &str) -> Option<(PathBuf, PathBuf)> {
    match browser_binaries() {
        Ok(found) => Some(found),
        Err(reason) => {
            if std::env::var("LATCHKEY_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                panic!("LATCHKEY_REQUIRE_BROWSER=1 but {reason}");
            }
            eprintln!("SKIPPED {what}: {reason} (set LATCHKEY_REQUIRE_BROWSER=1 to fail instead)");
            None
        }
    }
}

/// A chromedriver of this test's own, in a process group of its own with the browsers it starts: all
/// killed on drop, also when the test fails.
pub struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    pub fn start(binary: &Path) -> Chromedriver {
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", binary.display()));
        Chromedriver { child, url: format!("http://127.0.0.1:{port}") }
    }

    /// A new headless Chromium session, once the driver answers.
    pub async fn session(&self, chromium: &Path, script_timeout_ms: u64) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("timeouts".into(), json!({"pageLoad": 30_000, "script": script_timeout_ms, "implicit": 0}));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-dev-shm-usage", "--window-size=1280,800"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let deadline = tokio::time::Instant::now() + DRIVER_TIMEOUT;
        loop {
            match ClientBuilder::new(connector.clone()).capabilities(capabilities.clone()).connect(&self.url).await {
                Ok(client) => return client,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(error) => panic!("no WebDriver session from chromedriver at {}: {error}", self.url),
            }
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and any Chromium it left behind.
        let group = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with this test's own child's process group; no memory is involved.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
