//! Compiles the plugin crates to `wasm32-wasip2` components as part of the normal cargo
//! build, so nobody runs a manual step and no `.wasm` binary is committed.
//!
//! A nested `cargo build --release --target wasm32-wasip2` runs with its own target directory
//! (`<target>/plugins`), which avoids waiting on the outer build's lock and gives the
//! components stable paths that example configs can name.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (package, embedded as a built-in plugin?)
const PLUGINS: &[(&str, bool)] = &[
    ("redact", true),
    ("enrich", true),
    ("format-splunk", true),
    ("format-datadog", true),
    ("format-ocsf", true),
    ("custom-redactor", false),
    ("drop-marker", false),
    ("hostile", false),
    ("contract-v2", false),
    ("touch-two", false),
];

/// Builds of a package with features, into their own target directory (features would
/// otherwise unify with the build above), copied in as `<name>.wasm`: (name, package, features).
const VARIANTS: &[(&str, &str, &str)] = &[
    // The reference redactor on contract 1.0, to compare with its 1.1 build in the tests.
    ("redact-v10", "redact", "contract-1-0"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let root = manifest_dir.join("../..").canonicalize().expect("workspace root");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets this"));
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("plugins");

    for watched in [
        "wit",
        "plugins",
        "examples/custom-redactor",
        "tests/plugins",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=RUSTFLAGS");

    ensure_wasm_target(&root);

    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(&root)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", rustflags())
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    for (package, _) in PLUGINS {
        cmd.arg("--package").arg(package);
    }
    let status = cmd.status().expect("run cargo for the wasm plugins");
    assert!(status.success(), "building the wasm plugins failed: {cmd:?}");

    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    for (name, package, features) in VARIANTS {
        let variant_dir = target_dir.with_file_name(format!("plugins-{name}"));
        let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.current_dir(&root)
            .args(["build", "--release", "--target", "wasm32-wasip2", "--package", package])
            .args(["--features", features])
            .env("CARGO_TARGET_DIR", &variant_dir)
            .env("RUSTFLAGS", rustflags())
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET");
        let status = cmd.status().expect("run cargo for a plugin variant");
        assert!(
            status.success(),
            "building the wasm plugin variant {name} failed: {cmd:?}"
        );
        let built = wasm_path(&variant_dir.join("wasm32-wasip2").join("release"), package);
        std::fs::copy(&built, wasm_path(&wasm_dir, name))
            .unwrap_or_else(|e| panic!("copy {} into {}: {e}", built.display(), wasm_dir.display()));
    }
    let mut generated = String::new();
    generated.push_str(&format!(
        "/// Directory holding every compiled plugin.\npub const WASM_DIR: &str = {:?};\n",
        wasm_dir.display().to_string()
    ));
    generated.push_str("/// Plugins embedded in the host binary, by name.\npub const BUILTIN: &[(&str, &[u8])] = &[\n");
    for name in VARIANTS.iter().map(|(name, _, _)| name) {
        let file = wasm_path(&wasm_dir, name);
        assert!(file.exists(), "missing {}", file.display());
    }
    for (package, builtin) in PLUGINS {
        let file = wasm_path(&wasm_dir, package);
        assert!(file.exists(), "missing {}", file.display());
        if *builtin {
            generated.push_str(&format!(
                "    ({package:?}, include_bytes!({:?})),\n",
                file.display().to_string()
            ));
        }
    }
    generated.push_str("];\n");
    std::fs::write(out_dir.join("gen.rs"), generated).expect("write gen.rs");
}

/// rustup installs the targets of rust-toolchain.toml only when it installs the toolchain
/// itself; on a machine that already had the toolchain the wasm target may be missing. Add it,
/// so the README's commands work on a fresh machine with no manual step.
fn ensure_wasm_target(root: &Path) {
    const TARGET: &str = "wasm32-wasip2";
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if sysroot.is_some_and(|s| s.join("lib/rustlib").join(TARGET).join("lib").is_dir()) {
        return;
    }
    let added = Command::new("rustup")
        .current_dir(root)
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        added,
        "the {TARGET} target is missing and `rustup target add {TARGET}` failed; run it by hand"
    );
    println!("cargo:warning=the {TARGET} target was missing; added it with `rustup target add {TARGET}`");
}

fn wasm_path(dir: &Path, package: &str) -> PathBuf {
    dir.join(format!("{}.wasm", package.replace('-', "_")))
}

/// Keep `-D warnings` for the guests when the outer build asks for it, nothing else.
fn rustflags() -> &'static str {
    match option_env!("RUSTFLAGS") {
        Some(s) if s.contains("-D warnings") => "-D warnings",
        _ => "",
    }
}
