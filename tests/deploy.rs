//! The deployment artifacts under `deploy/` (docs/DEPLOY.md), each checked by its real
//! validator:
//!
//! - `deploy/container/Containerfile` passes hadolint with no finding at any level.
//! - The image is built with podman from files on this machine (`build-rootfs.sh` + `FROM
//!   scratch`, nothing pulled), its config says non-root user, both ports, the state volume
//!   and the entrypoint, and it runs: with `podman run` where the container runtime may start
//!   containers; where this sandbox refuses that (`crun: setrlimit RLIMIT_NOFILE: Operation not
//!   permitted`), from the image's own file system (a container's root from `podman create` +
//!   `podman mount`), entered with chroot as the image's user with the image's environment and
//!   entrypoint, in a network namespace of its own. Either way only the libraries in the image
//!   are there. `auditflow validate` passes on the image's config, `serve` takes the sample
//!   events over HTTP, `auditflow query` in the same root reads them back redacted, and SIGTERM
//!   drains (readiness 503) and exits 0.
//! - `deploy/compose/compose.yaml` passes `docker-compose config -q` with the example secrets
//!   and fails without them; every bind-mounted file exists; its auditflow config validates and
//!   its Prometheus config passes promtool.
//! - `deploy/systemd/auditflow.service` passes `systemd-analyze verify` without a warning and
//!   scores OK or better (exposure ≤ 4.9) in `systemd-analyze security --offline=true`.
//! - Every resource of `deploy/kubernetes/kustomization.yaml` passes `kubernetes-validate
//!   --strict` for Kubernetes 1.30 (the first with `lifecycle.preStop.sleep` on by default) and
//!   1.37; the ConfigMap's TOML validates; the grace period covers the preStop sleep and drain.
//!
//! A missing tool fails the test when `CI` is set (.ci/run installs them all) and skips it with
//! a line on stderr otherwise.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Secrets the deploy configs read from the environment, with test values. The signing key
/// is a valid Ed25519 seed (32 bytes, hex).
const SECRETS: [(&str, &str); 3] = [
    ("AUDITFLOW_TOKEN", TOKEN),
    ("AUDITFLOW_HASH_KEY", "deploy-test-hash-key"),
    (
        "AUDITFLOW_SIGNING_KEY",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    ),
];

/// `auditflow --version` names the release, the plugin contract of wit/plugin.wit and the git
/// revision of this checkout.
#[test]
fn version_names_release_contract_and_git_revision() {
    let out = run_ok(Command::new(BIN).arg("--version"));
    let wit = std::fs::read_to_string(workspace().join("wit/plugin.wit")).unwrap();
    let contract = wit
        .lines()
        .find_map(|l| l.strip_prefix("package auditflow:plugin@"))
        .and_then(|v| v.strip_suffix(';'))
        .expect("package line");
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(workspace())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let rev = std::env::var("AUDITFLOW_GIT_REV")
        .ok()
        .or(rev)
        .unwrap_or_else(|| "unknown".into());
    assert_eq!(
        out.trim(),
        format!(
            "auditflow {} (plugin contract {contract}, git {rev})",
            env!("CARGO_PKG_VERSION")
        )
    );
}

fn deploy(path: &str) -> PathBuf {
    workspace().join("deploy").join(path)
}

/// `tool` on PATH.
fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// Whether every tool is present. When one is missing: under CI (`CI` set) the test fails
/// naming it; elsewhere the test is skipped with a line on stderr.
fn tools_present(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| which(t).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: missing tool(s) {missing:?}: .ci/run installs them");
    }
    eprintln!("skipped {test}: missing tool(s) {missing:?} (install them as .ci/run does)");
    false
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// Run `cmd` to completion; the output, whatever the exit status.
fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Run `cmd`, assert it succeeded, return its stdout.
fn run_ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `auditflow validate --config FILE` with `env`; its stdout.
fn validate(config: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["validate", "--config"]).arg(config).envs(env.iter().copied());
    run_ok(&mut cmd)
}

/// A number in `text` after `key` (e.g. `shutdown_drain_ms = ` or `seconds: `), the first one.
fn number_after(text: &str, key: &str) -> u64 {
    let at = text.find(key).unwrap_or_else(|| panic!("`{key}` not found"));
    let digits: String = text[at + key.len()..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().unwrap_or_else(|_| panic!("no number after `{key}`"))
}

/// Sink shutdown grace (host/src/server.rs SINK_SHUTDOWN_GRACE) plus the writer's last commit:
/// what stopping takes beyond `server.shutdown_drain_ms`.
const STOP_AFTER_DRAIN_SECS: u64 = 5 + 1;

// ---------------------------------------------------------------------------------------------
// Container image

#[test]
fn containerfile_passes_hadolint() {
    if !tools_present("containerfile_passes_hadolint", &["hadolint"]) {
        return;
    }
    let file = deploy("container/Containerfile");
    // `style` is the lowest level: any finding at all fails.
    let out = output(
        Command::new("hadolint")
            .args(["--no-color", "--failure-threshold", "style"])
            .arg(&file),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "hadolint {}:\n{text}", file.display());
    assert!(text.trim().is_empty(), "hadolint findings:\n{text}");
    // And the findings are really looked for: a classic mistake is reported.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("Containerfile");
    std::fs::write(&bad, "FROM debian\nRUN cd /tmp && apt-get install curl\n").unwrap();
    let out = output(Command::new("hadolint").arg("--no-color").arg(&bad));
    assert!(!out.status.success(), "hadolint accepted a bad Containerfile");
}

/// podman with storage of its own in `dir` (vfs: no overlay mounts to clean up, works in
/// any sandbox). `DEPLOY_TEST_PODMAN_FLAGS` adds global flags (e.g. `--runtime runc`).
struct Podman {
    root: PathBuf,
    runroot: PathBuf,
}

impl Podman {
    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .args(["--storage-driver", "vfs", "--log-level", "error"]);
        if let Ok(flags) = std::env::var("DEPLOY_TEST_PODMAN_FLAGS") {
            c.args(flags.split_whitespace());
        }
        c
    }
}

/// A network namespace made for the test (`ip netns add`) with loopback up; deleted on drop.
struct NetNs(String);

impl NetNs {
    fn new() -> NetNs {
        let name = format!("auditflow-deploy-{}", std::process::id());
        let _ = output(Command::new("ip").args(["netns", "del", &name]));
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = NetNs(name);
        run_ok(Command::new("ip").args(["netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"]));
        ns
    }

    /// `curl` inside the namespace: (status, body). Status 0: no answer.
    fn curl(&self, args: &[&str]) -> (u16, String) {
        let out = output(
            Command::new("ip")
                .args(["netns", "exec", &self.0, "curl", "-sS", "--max-time", "10"])
                .args(["-w", "\n%{http_code}"])
                .args(args),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = output(Command::new("ip").args(["netns", "del", &self.0]));
    }
}

/// How the image's server is running.
enum Running {
    /// `podman run`: the container's name.
    Container(String),
    /// From the image's root file system: the chroot'ed server and that root.
    Root { child: Child, root: PathBuf },
}

impl Drop for Running {
    /// A test that failed half-way leaves no server behind.
    fn drop(&mut self) {
        if let Running::Root { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The image's config (`podman image inspect`): user, environment, entrypoint and command.
struct ImageConfig {
    user: String,
    env: Vec<(String, String)>,
    argv: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn inspect_image(podman: &Podman, image: &str) -> ImageConfig {
    let text = run_ok(podman.cmd().args(["image", "inspect", image]));
    let json: Value = serde_json::from_str(&text).unwrap();
    let config = &json[0]["Config"];
    let user = config["User"].as_str().unwrap_or_default().to_owned();
    assert_eq!(user, "65532:65532", "the image must run as the numeric non-root user");
    for port in ["8080/tcp", "9090/tcp"] {
        assert!(
            config["ExposedPorts"].get(port).is_some(),
            "port {port} not exposed: {config}"
        );
    }
    assert!(
        config["Volumes"].get("/var/lib/auditflow").is_some(),
        "/var/lib/auditflow is not a volume: {config}"
    );
    let entrypoint = strings(&config["Entrypoint"]);
    let cmd = strings(&config["Cmd"]);
    assert_eq!(entrypoint, ["/usr/local/bin/auditflow"]);
    assert_eq!(cmd, ["serve", "--config", "/etc/auditflow/auditflow.toml"]);
    let env = strings(&config["Env"])
        .into_iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect::<Vec<_>>();
    for want in ["HOME=/var/lib/auditflow", "XDG_CACHE_HOME=/var/lib/auditflow/cache"] {
        let (k, v) = want.split_once('=').unwrap();
        assert!(
            env.iter().any(|(ek, ev)| ek == k && ev == v),
            "image env lacks {want}: {env:?}"
        );
    }
    ImageConfig {
        user,
        env,
        argv: entrypoint.into_iter().chain(cmd).collect(),
    }
}

/// The uid a process runs as (`/proc/PID/status`).
fn process_uid(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn image_builds_from_local_files_and_serves_from_its_own_root() {
    let test = "image_builds_from_local_files_and_serves_from_its_own_root";
    if !tools_present(test, &["podman", "ldd", "strip", "ip", "chroot", "curl", "kill"]) {
        return;
    }
    if !is_root() {
        // podman's storage, chroot and network namespaces need root (CI runs as root).
        if std::env::var_os("CI").is_some() {
            panic!("{test}: needs root");
        }
        eprintln!("skipped {test}: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("context");
    let started = Instant::now();

    // The root file system, from this machine's files.
    run_ok(Command::new(deploy("container/build-rootfs.sh")).arg(BIN).arg(&context));
    let rootfs = context.join("rootfs");
    assert!(!rootfs.join("bin/sh").exists(), "a shell slipped into the image");
    let podman = Podman {
        root: dir.path().join("storage"),
        runroot: dir.path().join("run"),
    };
    let image = "localhost/auditflow:deploy-test";
    run_ok(
        podman
            .cmd()
            .args(["build", "--network=none", "--pull=never", "--quiet", "-f"])
            .arg(deploy("container/Containerfile"))
            .args(["-t", image])
            .arg(&context),
    );
    let size = run_ok(podman.cmd().args(["image", "inspect", "--format", "{{.Size}}", image]));
    eprintln!(
        "image {image}: {} bytes (binary stripped to {} bytes)",
        size.trim(),
        std::fs::metadata(rootfs.join("usr/local/bin/auditflow")).unwrap().len()
    );
    let config = inspect_image(&podman, image);

    let ns = NetNs::new();
    let secrets: Vec<(String, String)> = SECRETS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let env: Vec<(String, String)> = config.env.iter().cloned().chain(secrets.iter().cloned()).collect();
    let (uid, gid) = config.user.split_once(':').unwrap();
    let chroot = which("chroot").unwrap();
    // The image's root with its user and environment, nothing of this host's.
    let in_root = |root: &Path, args: &[String]| {
        let mut c = Command::new(&chroot);
        c.arg(format!("--userspec={uid}:{gid}"))
            .arg(root)
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)));
        c
    };

    // 1. `podman run`, joined to the test's network namespace.
    let name = "auditflow-deploy-test";
    let mut run = podman.cmd();
    run.args(["run", "-d", "--name", name])
        .arg(format!("--network=ns:/run/netns/{}", ns.0));
    for (k, v) in &secrets {
        run.arg("-e").arg(format!("{k}={v}"));
    }
    if let Ok(flags) = std::env::var("DEPLOY_TEST_RUN_FLAGS") {
        run.args(flags.split_whitespace());
    }
    let out = output(run.arg(image));
    let running = if out.status.success() {
        eprintln!("{test}: running with podman run");
        Running::Container(name.to_owned())
    } else {
        // 2. This sandbox lets no OCI runtime start a container (crun: setrlimit
        // RLIMIT_NOFILE: Operation not permitted; past that, cgroups in hybrid mode). Any
        // other failure is a real one.
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            err.contains("OCI") || err.contains("crun") || err.contains("runc"),
            "podman run failed for a reason other than the sandbox refusing containers:\n{err}"
        );
        eprintln!(
            "{test}: `podman run` is refused here ({}); running from the image's root instead",
            err.trim()
        );
        let _ = output(podman.cmd().args(["rm", "-f", name]));
        let ctr = "auditflow-deploy-root";
        run_ok(podman.cmd().args(["create", "--name", ctr, image]));
        let root = PathBuf::from(run_ok(podman.cmd().args(["mount", ctr])).trim());
        assert!(
            root.join("usr/local/bin/auditflow").is_file(),
            "no binary in {}",
            root.display()
        );

        // The config check of the image, with its own binary and libraries.
        let out = run_ok(&mut in_root(
            &root,
            &strings_of(&[&config.argv[0], "validate", "--config", "/etc/auditflow/auditflow.toml"]),
        ));
        assert!(out.contains("ok (2 stages: redact → enrich"), "validate: {out}");

        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut serve = Command::new("ip");
        serve
            .args(["netns", "exec", &ns.0])
            .arg(&chroot)
            .arg(format!("--userspec={uid}:{gid}"))
            .arg(&root)
            .args(&config.argv)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = serve.spawn().unwrap();
        Running::Root { child, root }
    };

    let server_log = |running: &Running| match running {
        Running::Container(name) => {
            let out = output(podman.cmd().args(["logs", name]));
            String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
        }
        Running::Root { .. } => std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default(),
    };
    let mut running = running;

    // Up: /health on the metrics port.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Running::Root { child, .. } = &mut running
            && let Some(status) = child.try_wait().unwrap()
        {
            panic!(
                "the server exited ({status}) before it was healthy:\n{}",
                server_log(&running)
            );
        }
        if ns.curl(&["http://127.0.0.1:9090/health"]).0 == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not healthy in time:\n{}",
            server_log(&running)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Not root: the server process runs as the image's user.
    let pid = match &running {
        Running::Container(name) => run_ok(podman.cmd().args(["inspect", "--format", "{{.State.Pid}}", name]))
            .trim()
            .parse::<u32>()
            .unwrap(),
        Running::Root { child, .. } => child.id(),
    };
    assert_eq!(process_uid(pid), Some(65532), "the server does not run as 65532");
    assert_eq!(ns.curl(&["http://127.0.0.1:8080/health/ready"]).0, 200);

    // Ingest over HTTP.
    let events = workspace().join("examples/events.ndjson");
    let (status, body) = ns.curl(&[
        "-H",
        &format!("Authorization: Bearer {TOKEN}"),
        "-H",
        "Content-Type: application/x-ndjson",
        "--data-binary",
        &format!("@{}", events.display()),
        "http://127.0.0.1:8080/v1/events",
    ]);
    assert_eq!(status, 200, "POST /v1/events: {body}\n{}", server_log(&running));
    let ack: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ack["accepted"], 21, "{ack}");
    let (status, _) = ns.curl(&[
        "-H",
        "Authorization: Bearer wrong",
        "--data-binary",
        "{}",
        "http://127.0.0.1:8080/v1/events",
    ]);
    assert_eq!(status, 401);
    let (status, metrics) = ns.curl(&["http://127.0.0.1:9090/metrics"]);
    assert_eq!(status, 200);
    assert!(metrics.contains("auditflow_"), "no auditflow metrics:\n{metrics}");

    // Read back with the image's binary, against the image's config and state.
    let query = strings_of(&[
        &config.argv[0],
        "query",
        "--config",
        "/etc/auditflow/auditflow.toml",
        "--limit",
        "100",
        "--format",
        "ndjson",
    ]);
    let rows = match &running {
        Running::Container(name) => {
            let mut exec = podman.cmd();
            exec.args(["exec", name]).args(&query);
            run_ok(&mut exec)
        }
        Running::Root { root, .. } => run_ok(&mut in_root(root, &query)),
    };
    let rows: Vec<Value> = rows.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let sent: BTreeSet<String> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let stored: BTreeSet<String> = rows
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored, sent, "stored events differ from the posted ones");
    for row in &rows {
        let actor = row["actor"]["id"].as_str().unwrap_or_default();
        assert!(!actor.contains('@'), "actor id stored unredacted: {row}");
    }

    // SIGTERM: readiness turns 503 while still serving (shutdown_drain_ms), then exit 0.
    match &running {
        Running::Container(name) => {
            run_ok(podman.cmd().args(["kill", "--signal", "TERM", name]));
        }
        Running::Root { child, .. } => {
            run_ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
        }
    }
    let drain_deadline = Instant::now() + Duration::from_secs(4);
    let mut saw_draining = false;
    while Instant::now() < drain_deadline {
        if ns.curl(&["http://127.0.0.1:8080/health/ready"]).0 == 503 {
            saw_draining = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(saw_draining, "readiness never answered 503 while draining");
    let code = match &mut running {
        Running::Container(name) => {
            let code = run_ok(podman.cmd().args(["wait", name.as_str()]));
            code.trim().parse::<i32>().unwrap()
        }
        Running::Root { child, .. } => {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status.code().unwrap_or(-1);
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("no exit 30 s after SIGTERM:\n{}", server_log(&running));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let log = server_log(&running);
    assert_eq!(code, 0, "exit after SIGTERM:\n{log}");
    assert!(log.contains("auditflow stopped"), "no clean stop in the log:\n{log}");

    if let Running::Root { root, .. } = &running {
        // The state directory is the user's: the database and wasmtime's cache are there.
        use std::os::unix::fs::MetadataExt;
        let db = root.join("var/lib/auditflow/auditflow.db");
        assert_eq!(std::fs::metadata(&db).unwrap().uid(), 65532, "{}", db.display());
        let cache = root.join("var/lib/auditflow/cache/wasmtime");
        assert!(
            std::fs::read_dir(&cache)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false),
            "wasmtime wrote no compiled plugin to {}",
            cache.display()
        );
        let _ = output(podman.cmd().args(["umount", "auditflow-deploy-root"]));
    }
    let _ = output(podman.cmd().args(["rm", "-af"]));
    let _ = output(podman.cmd().args(["rmi", "-af"]));
    eprintln!("{test}: {:.1} s", started.elapsed().as_secs_f64());
}

fn strings_of(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Compose

/// `NAME=value` lines of an env file (comments and blank lines skipped).
fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not NAME=value: {l}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn compose_file_passes_docker_compose_config() {
    let test = "compose_file_passes_docker_compose_config";
    if !tools_present(test, &["docker-compose"]) {
        return;
    }
    let compose = deploy("compose/compose.yaml");
    let example = deploy("compose/.env.example");
    let vars = env_file(&example);
    let compose_cmd = |env_file: &Path, quiet: bool| {
        let mut c = Command::new("docker-compose");
        c.arg("--env-file").arg(env_file).arg("-f").arg(&compose).arg("config");
        if quiet {
            c.arg("-q");
        }
        for (k, _) in &vars {
            c.env_remove(k);
        }
        c
    };
    // Valid with the example secrets.
    let out = output(&mut compose_cmd(&example, true));
    assert!(
        out.status.success(),
        "docker-compose config -q:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Refused without them: no service starts with an empty token or password.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.env");
    std::fs::write(&empty, "").unwrap();
    let out = output(&mut compose_cmd(&empty, true));
    assert!(!out.status.success(), "compose accepted missing secrets");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("AUDITFLOW_"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every bind-mounted host path exists (the resolved config lists them absolute).
    let resolved = run_ok(&mut compose_cmd(&example, false));
    let mut binds = 0;
    for line in resolved.lines() {
        // `- /host/path:/container/path[:ro]` (command arguments have no colon).
        if let Some(spec) = line.trim().strip_prefix("- /")
            && let Some((path, _)) = spec.split_once(':')
        {
            let host = format!("/{path}");
            assert!(Path::new(&host).exists(), "bind mount source missing: {host}");
            binds += 1;
        }
    }
    assert!(
        binds >= 5,
        "expected the config, prometheus and grafana binds:\n{resolved}"
    );
    for service in ["auditflow:", "postgres:", "prometheus:", "grafana:"] {
        assert!(resolved.contains(service), "service {service} missing:\n{resolved}");
    }

    // The auditflow config the compose file mounts.
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = validate(&deploy("compose/auditflow.toml"), &env);
    assert!(out.contains("ok (2 stages"), "{out}");
    let toml = std::fs::read_to_string(deploy("compose/auditflow.toml")).unwrap();
    assert!(toml.contains("url = \"postgres://auditflow@postgres:5432/auditflow\""));
    let yaml = std::fs::read_to_string(&compose).unwrap();
    let grace = number_after(&yaml, "stop_grace_period:");
    assert!(
        grace > number_after(&toml, "shutdown_drain_ms =") / 1000 + STOP_AFTER_DRAIN_SECS,
        "stop_grace_period too short for the drain"
    );

    // Prometheus: the compose config with the rules it mounts passes promtool.
    if tools_present(
        "compose_file_passes_docker_compose_config (promtool part)",
        &["promtool"],
    ) {
        promtool_checks_compose_prometheus(dir.path());
    }
    // Grafana: the provider reads where compose mounts the four dashboards.
    let provider = std::fs::read_to_string(deploy("compose/grafana/provisioning/dashboards/auditflow.yml")).unwrap();
    assert!(provider.contains("path: /var/lib/grafana/dashboards/auditflow"));
    assert!(yaml.contains("../../monitoring/grafana/dashboards:/var/lib/grafana/dashboards/auditflow:ro"));
    let dashboards = std::fs::read_dir(workspace().join("monitoring/grafana/dashboards"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(dashboards, 4);
}

/// `promtool check config` on the compose Prometheus config next to a copy of the rules it
/// mounts (`rules/*.yml`).
fn promtool_checks_compose_prometheus(dir: &Path) {
    let prom = dir.join("prometheus");
    std::fs::create_dir_all(prom.join("rules")).unwrap();
    std::fs::copy(deploy("compose/prometheus.yml"), prom.join("prometheus.yml")).unwrap();
    let rules = workspace().join("monitoring/prometheus/rules");
    for entry in std::fs::read_dir(&rules).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yml") {
            std::fs::copy(&p, prom.join("rules").join(p.file_name().unwrap())).unwrap();
        }
    }
    let out = run_ok(
        Command::new("promtool")
            .args(["check", "config"])
            .arg(prom.join("prometheus.yml")),
    );
    assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// systemd

#[test]
fn systemd_unit_verifies_and_scores_ok() {
    let test = "systemd_unit_verifies_and_scores_ok";
    if !tools_present(test, &["systemd-analyze", "cp"]) {
        return;
    }
    let unit = deploy("systemd/auditflow.service");
    let text = std::fs::read_to_string(&unit).unwrap();

    // verify, on an alternate root that holds what the unit names: the binary at
    // /usr/local/bin/auditflow, /bin/kill and the system's own units (targets it orders
    // against). Any message, even a warning, fails.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["etc/systemd/system", "usr/local/bin", "bin", "usr/lib/systemd"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(&unit, root.join("etc/systemd/system/auditflow.service")).unwrap();
    std::fs::copy(BIN, root.join("usr/local/bin/auditflow")).unwrap();
    std::fs::copy(which("kill").unwrap(), root.join("bin/kill")).unwrap();
    let system_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .find(|p| Path::new(p).join("multi-user.target").exists())
        .expect("no system units");
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(system_units)
            .arg(root.join("usr/lib/systemd/")),
    );
    let out = output(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg("auditflow.service"),
    );
    let msgs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && msgs.trim().is_empty(),
        "systemd-analyze verify:\n{msgs}"
    );

    // The exposure score, read off the unit file alone.
    let out = output(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&unit),
    );
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "systemd-analyze security:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let overall = report
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for auditflow.service:")
                .map(|(_, r)| r.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no overall exposure level:\n{report}"));
    let mut words = overall.split_whitespace();
    let score: f64 = words.next().unwrap().parse().unwrap();
    let level = words.next().unwrap_or_default();
    eprintln!("systemd-analyze security: {overall}");
    assert!(
        score <= 4.9 && matches!(level, "OK" | "SAFE"),
        "exposure {overall}: must be OK or SAFE (≤ 4.9)\n{report}"
    );
    // W^X stays allowed (wasmtime JITs plugins): the report must list it as not set.
    assert!(
        report
            .lines()
            .any(|l| l.starts_with('✗') && l.contains("MemoryDenyWriteExecute=")),
        "MemoryDenyWriteExecute must not be set: wasmtime needs executable memory it writes"
    );

    // Required settings, and a stop timeout longer than the drain.
    for line in [
        "ExecStartPre=/usr/local/bin/auditflow validate --config /etc/auditflow/auditflow.toml",
        "ExecStart=/usr/local/bin/auditflow serve --config /etc/auditflow/auditflow.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "DynamicUser=yes",
        "StateDirectory=auditflow",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "SystemCallFilter=@system-service",
        "EnvironmentFile=/etc/auditflow/auditflow.env",
    ] {
        assert!(text.lines().any(|l| l.trim() == line), "unit lacks `{line}`");
    }
    let config = std::fs::read_to_string(deploy("config/auditflow.toml")).unwrap();
    let drain_secs = number_after(&config, "shutdown_drain_ms =") / 1000;
    assert!(number_after(&text, "\nTimeoutStopSec=") > drain_secs + STOP_AFTER_DRAIN_SECS);
    assert!(config.contains("url = \"sqlite:///var/lib/auditflow/auditflow.db\""));

    // The env file example has every variable the config reads, and the config validates
    // with it (what ExecStartPre runs).
    let vars = env_file(&deploy("systemd/auditflow.env"));
    for (name, _) in SECRETS {
        assert!(vars.iter().any(|(k, _)| k == name), "auditflow.env lacks {name}");
    }
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = validate(&deploy("config/auditflow.toml"), &env);
    assert!(out.contains("ok (2 stages"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

/// The files listed under `resources:` in the kustomization.
fn kustomize_resources(kustomization: &str) -> Vec<String> {
    let mut in_resources = false;
    let mut files = Vec::new();
    for line in kustomization.lines() {
        if !line.starts_with(' ') && !line.starts_with('-') {
            in_resources = line.starts_with("resources:");
            continue;
        }
        if in_resources && let Some(item) = line.trim().strip_prefix("- ") {
            files.push(item.trim().to_owned());
        }
    }
    files
}

/// The block scalar `auditflow.toml: |` of the ConfigMap, unindented.
fn configmap_toml(yaml: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "auditflow.toml: |");
    let head = lines.next().expect("no `auditflow.toml: |` in the ConfigMap");
    let indent = head.len() - head.trim_start().len() + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn kubernetes_manifests_pass_kubernetes_validate() {
    let test = "kubernetes_manifests_pass_kubernetes_validate";
    if !tools_present(test, &["kubernetes-validate"]) {
        return;
    }
    let base = deploy("kubernetes");
    let kustomization = std::fs::read_to_string(base.join("kustomization.yaml")).unwrap();
    let resources = kustomize_resources(&kustomization);
    // The kustomization lists every manifest of the directory, and only those.
    let on_disk: BTreeSet<String> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        resources.iter().cloned().collect::<BTreeSet<_>>(),
        on_disk,
        "kustomization resources"
    );

    for version in ["1.30.0", "1.37.0"] {
        let out = output(
            Command::new("kubernetes-validate")
                .args(["-k", version, "--strict"])
                .args(resources.iter().map(|r| base.join(r))),
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "kubernetes-validate -k {version}:\n{text}");
        let passed = text.lines().filter(|l| l.contains(" passed for resource ")).count();
        assert_eq!(
            passed,
            resources.len(),
            "every resource must pass (k8s {version}):\n{text}"
        );
        assert!(!text.contains("WARN"), "{text}");
    }
    // The validator does reject what Kubernetes would.
    let dir = tempfile::tempdir().unwrap();
    let deployment = std::fs::read_to_string(base.join("deployment.yaml")).unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        deployment.replace("preStop:\n              sleep:", "preStop:\n              nap:"),
    )
    .unwrap();
    let out = output(
        Command::new("kubernetes-validate")
            .args(["-k", "1.30.0", "--strict"])
            .arg(&bad),
    );
    assert!(!out.status.success(), "kubernetes-validate accepted an unknown field");

    // What the Deployment promises.
    for needle in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "drop: [\"ALL\"]",
        "type: RuntimeDefault",
        "path: /health/ready",
        "path: /health\n",
        "prometheus.io/scrape: \"true\"",
        "prometheus.io/port: \"9090\"",
        "prometheus.io/path: /metrics",
        "mountPath: /var/lib/auditflow",
        "emptyDir:",
    ] {
        assert!(deployment.contains(needle), "deployment.yaml lacks `{needle}`");
    }
    let configmap = std::fs::read_to_string(base.join("configmap.yaml")).unwrap();
    let toml = configmap_toml(&configmap);
    let grace = number_after(&deployment, "terminationGracePeriodSeconds:");
    let pre_stop_at = deployment.find("preStop:").expect("no preStop hook");
    let pre_stop = number_after(&deployment[pre_stop_at..], "seconds:");
    let drain = number_after(&toml, "shutdown_drain_ms =") / 1000;
    assert!(
        grace > pre_stop + drain + STOP_AFTER_DRAIN_SECS,
        "terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop} + drain {drain} + {STOP_AFTER_DRAIN_SECS}"
    );

    // The ConfigMap's TOML validates, with the Secret's files where it mounts them.
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    for (file, (_, value)) in ["ingest-token", "hash-key", "signing-key"].iter().zip(SECRETS) {
        std::fs::write(secrets.join(file), value).unwrap();
    }
    let config = dir.path().join("auditflow.toml");
    std::fs::write(
        &config,
        toml.replace("/run/secrets/auditflow/", &format!("{}/", secrets.display())),
    )
    .unwrap();
    let out = validate(&config, &[]);
    assert!(out.contains("ok (2 stages"), "{out}");
    assert!(toml.contains("url = \"postgres://auditflow@postgres:5432/auditflow\""));
}
