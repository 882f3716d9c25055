//! Test harness for end-to-end tests: runs the real `auditflow` binary on a free loopback port
//! with a config written to a temp dir, and talks to it over real HTTP.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_auditflow");
pub const TOKEN: &str = "e2e-test-token";

/// Root of the workspace (for examples/ and tests/data).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The text of `tests/data/<name>.gz` (the labeled dev set: `events-dev.ndjson`,
/// `labels-dev.ndjson`; see tests/data/README.md).
pub fn dev_data(name: &str) -> String {
    use std::io::Read;
    let path = workspace().join("tests/data").join(format!("{name}.gz"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running auditflow server; killed when dropped.
pub struct TestServer {
    pub child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// `http`, or `https` for a server started with [`TestServer::start_https_in`].
    pub scheme: &'static str,
}

impl TestServer {
    /// Start a server with `config` (TOML). `{{WORKSPACE}}` is replaced by the workspace root.
    /// The config must read its token from env `AUDITFLOW_TOKEN`.
    pub fn start(config: &str) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, config)
    }

    pub fn start_in(dir: tempfile::TempDir, config: &str) -> TestServer {
        let server = Self::spawn_in(dir, config);
        server.wait_healthy();
        server
    }

    /// Start a server whose listener speaks HTTPS (`[server.tls]`): ready once it logs that it
    /// listens. `url()` then gives `https://localhost:PORT…`.
    pub fn start_https_in(dir: tempfile::TempDir, config: &str) -> TestServer {
        let mut server = Self::spawn_in(dir, config);
        server.scheme = "https";
        let deadline = Instant::now() + Duration::from_secs(60);
        while !server.log().contains("auditflow listening") {
            assert!(
                Instant::now() < deadline,
                "server did not start; log:\n{}",
                server.log()
            );
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("server exited with {status}; log:\n{}", server.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn spawn_in(dir: tempfile::TempDir, config: &str) -> TestServer {
        let config_path = dir.path().join("auditflow.toml");
        let text = config.replace("{{WORKSPACE}}", &workspace().display().to_string());
        std::fs::write(&config_path, text).unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let log_path = dir.path().join("server.log");
        let child = spawn_server(&config_path, &addr, &log_path);
        TestServer {
            child,
            addr,
            dir,
            config_path,
            log_path,
            scheme: "http",
        }
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        get_text(&self.url("/metrics")).await
    }

    pub fn url(&self, path: &str) -> String {
        match self.scheme {
            // Certificates name `localhost`; the port is the listener's.
            "https" => format!("https://{}{path}", self.addr.replace("127.0.0.1", "localhost")),
            _ => format!("http://{}{path}", self.addr),
        }
    }

    /// Send signal `sig` (`HUP`, `TERM`, …) to the server.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait until the log shows `needle` `count` times.
    pub async fn wait_for_log(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "log never showed {needle:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = self.url("/health");
        while Instant::now() < deadline {
            if let Ok(200) = probe::blocking_get(&url) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not become healthy; log:\n{}", self.log());
    }

    /// SQLite file of this server (the configs in tests use `sqlite://events.db`).
    pub fn db_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("events.db").display())
    }

    /// Stop the server and start it again on the same config, address and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn_server(&self.config_path, &self.addr, &self.log_path);
        self.wait_healthy();
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn spawn_server(config: &Path, addr: &str, log: &Path) -> Child {
    let log_file = std::fs::File::create(log).unwrap();
    Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", addr])
        .env("AUDITFLOW_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap()
}

/// Minimal blocking HTTP probe so the harness needs no runtime.
mod probe {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub fn blocking_get(url: &str) -> std::io::Result<u16> {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut s = TcpStream::connect(host)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(s, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        Ok(buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0))
    }
}

/// Run the auditflow CLI; returns (exit success, stdout, stderr).
pub fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("AUDITFLOW_TOKEN", TOKEN)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The body of `GET url`, as text.
pub async fn get_text(url: &str) -> String {
    http().get(url).send().await.unwrap().text().await.unwrap()
}

/// Sum of the samples of `family` in Prometheus text whose labels include all of `labels`
/// (each written as in the text, e.g. `reason="limit"`).
pub fn sample(metrics: &str, family: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Gzip bytes.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Every stored row as JSON, read through the auditflow CLI (`query --format ndjson`).
pub fn stored_rows(server: &TestServer) -> Vec<serde_json::Value> {
    let (ok, out, err) = cli(&[
        "query",
        "--config",
        server.config_path.to_str().unwrap(),
        "--limit",
        "1000000",
        "--format",
        "ndjson",
    ]);
    assert!(ok, "query failed: {err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

pub fn http() -> ::reqwest::Client {
    ::reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The quick start pipeline with storage in the test's temp dir.
pub fn quickstart_config() -> String {
    let examples = workspace().join("examples");
    let text = std::fs::read_to_string(examples.join("quickstart.toml")).unwrap();
    // The copy lives in the test's directory: point its lookup files back at examples/.
    text.replace("url = \"sqlite://quickstart.db\"", "url = \"sqlite://events.db\"")
        .replace(
            "path = \"lookups/",
            &format!("path = \"{}/lookups/", examples.display()),
        )
}
