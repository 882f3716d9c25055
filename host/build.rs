//! Build facts for `auditflow --version`: the plugin contract version, read from the `package`
//! line of `wit/plugin.wit` (so the binary cannot disagree with the WIT it was built from), and
//! the git revision of the checkout (`AUDITFLOW_GIT_REV` overrides it, for builds from a source
//! tarball; `unknown` when neither is available).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The package's folder, as cargo says when it runs this script (not where the script was
/// compiled: the compiled script may be reused from another checkout sharing the target dir).
fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
}

fn main() {
    let wit = manifest_dir().join("../wit/plugin.wit");
    println!("cargo:rerun-if-changed={}", wit.display());
    let text = std::fs::read_to_string(&wit).expect("wit/plugin.wit is readable");
    let contract = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("package auditflow:plugin@"))
        .and_then(|rest| rest.strip_suffix(';'))
        .expect("wit/plugin.wit declares `package auditflow:plugin@X.Y.Z;`");
    println!("cargo:rustc-env=AUDITFLOW_CONTRACT_VERSION={contract}");

    println!("cargo:rerun-if-env-changed=AUDITFLOW_GIT_REV");
    let rev = std::env::var("AUDITFLOW_GIT_REV")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=AUDITFLOW_GIT_REV={rev}");
}

/// `git rev-parse --short=12 HEAD`, re-run when HEAD moves.
fn git_revision() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(manifest_dir())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let rev = git(&["rev-parse", "--short=12", "HEAD"])?;
    // HEAD, the branch it points to, and packed refs: a commit or checkout changes one of them.
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            watch(&absolute(&p));
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(&["rev-parse", "--git-path", &branch])
    {
        watch(&absolute(&p));
    }
    Some(rev)
}

/// Re-run when `path` changes; a path that does not exist is not watched (cargo would re-run
/// the script on every build).
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn absolute(p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() { p } else { manifest_dir().join(p) }
}
