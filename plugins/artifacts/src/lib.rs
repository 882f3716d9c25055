//! The compiled plugin components (built by `build.rs` during the normal cargo build).
//!
//! `BUILTIN` holds the reference plugins embedded in the host binary; `path` finds any
//! compiled plugin (including examples and test plugins) on disk.

include!(concat!(env!("OUT_DIR"), "/gen.rs"));

/// The embedded reference plugin called `name` (`redact`, `enrich`, …).
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, bytes)| *bytes)
}

/// Names of the embedded reference plugins.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(n, _)| *n)
}

/// Where the compiled component of workspace package `package` lives.
pub fn path(package: &str) -> std::path::PathBuf {
    std::path::Path::new(WASM_DIR).join(format!("{}.wasm", package.replace('-', "_")))
}
