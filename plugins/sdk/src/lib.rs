//! Guest SDK for auditflow plugins.
//!
//! A plugin is a type implementing [`Stage`] (contract 1.1: reads the fields it asks for,
//! answers with patches; exported with [`export_stage!`]), [`Transform`] (contract 1.0: whole
//! events in and out; [`export_transform!`]) or [`Formatter`] (SIEM output;
//! [`export_formatter!`]).
//! The SDK owns the WIT bindings (`wit/plugin.wit`), keeps the plugin's state between calls,
//! and offers helpers for the parts every plugin needs: walking the strings of the JSON
//! `metadata`, addressing typed fields by their config name, logging and lookups.
//!
//! ```ignore
//! use auditflow_sdk::{Event, Outcome, Transform, Config};
//! struct Upper;
//! impl Transform for Upper {
//!     fn init(_config: Config) -> Result<Self, String> { Ok(Upper) }
//!     fn process(&mut self, mut event: Event) -> Outcome {
//!         event.event_type = event.event_type.to_uppercase();
//!         Outcome::Keep(event)
//!     }
//! }
//! auditflow_sdk::export_transform!(Upper);
//! ```

pub mod fields;
pub mod json;
pub mod stage;

/// Bindings for the 1.0 `transform` world, from the frozen `wit/v1.0/plugin.wit`: plugins
/// built with [`Transform`] are contract 1.0 components.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v1.0",
        world: "auditflow:plugin/transform",
        pub_export_macro: true,
        export_macro_name: "export_stage",
        default_bindings_module: "auditflow_sdk::bindings",
    });
}

/// Bindings for the `formatter` world (1.0, frozen); shares the types and host interfaces with
/// [`bindings`].
pub mod formatter_bindings {
    wit_bindgen::generate!({
        path: "../../wit/v1.0",
        world: "auditflow:plugin/formatter",
        pub_export_macro: true,
        export_macro_name: "export_format",
        default_bindings_module: "auditflow_sdk::formatter_bindings",
        with: {
            "auditflow:plugin/types@1.0.0": crate::bindings::auditflow::plugin::types,
            "auditflow:plugin/host@1.0.0": crate::bindings::auditflow::plugin::host,
        },
    });
}

/// Bindings for the 1.1 `batch-transform` world (`wit/plugin.wit`).
pub mod batch_bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "auditflow:plugin/batch-transform",
        pub_export_macro: true,
        export_macro_name: "export_batch_stage",
        default_bindings_module: "auditflow_sdk::batch_bindings",
    });
}

pub use bindings::auditflow::plugin::types::{Event, Level, Outcome};
pub use serde_json;
pub use stage::{EventPatch, Field, Patchable, Stage};

/// A stage's `[stages.config]` table, as JSON.
pub type Config = serde_json::Value;

/// A redaction, enrichment or custom stage.
pub trait Transform: Sized + 'static {
    /// Build the plugin from its stage config; an error rejects the config.
    fn init(config: Config) -> Result<Self, String>;

    /// Process one event.
    fn process(&mut self, event: Event) -> Outcome;

    /// Process a batch; one outcome per event, in order. Override for batch-level work.
    fn process_batch(&mut self, events: Vec<Event>) -> Vec<Outcome> {
        events.into_iter().map(|e| self.process(e)).collect()
    }
}

/// A SIEM formatter: one JSON document per event.
pub trait Formatter: Sized + 'static {
    fn init(config: Config) -> Result<Self, String>;
    fn format(&mut self, event: &Event) -> Result<String, String>;
}

/// Write to the host log (tagged with the stage name). Never log event contents.
pub fn log(level: Level, message: &str) {
    bindings::auditflow::plugin::host::log(level, message)
}

/// Look a key up in a host-managed table granted to this stage.
pub fn lookup(table: &str, key: &str) -> Option<String> {
    bindings::auditflow::plugin::host::lookup(table, key)
}

/// Parse the JSON text the host passes to `init`.
pub fn parse_config(config_json: &str) -> Result<Config, String> {
    if config_json.trim().is_empty() {
        return Ok(Config::Object(Default::default()));
    }
    serde_json::from_str(config_json).map_err(|e| format!("config is not valid JSON: {e}"))
}

/// Plumbing used by the export macros; not part of the public API.
#[doc(hidden)]
pub mod __rt {
    pub use crate::batch_bindings;
    pub use crate::bindings;
    pub use crate::formatter_bindings;
    pub use std::cell::RefCell;
}

/// Export a [`Stage`] implementation as the plugin's `batch-stage` interface (contract 1.1).
#[macro_export]
macro_rules! export_stage {
    ($plugin:ty) => {
        // Component exports only exist on wasm32; natively the plugin is still "used", so its
        // crate builds without dead-code noise.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn($crate::Config) -> Result<$plugin, String> = <$plugin as $crate::Stage>::init;
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static STATE: $crate::__rt::RefCell<Option<$plugin>> =
                    const { $crate::__rt::RefCell::new(None) };
            }
            struct Export;
            impl $crate::__rt::batch_bindings::exports::auditflow::plugin::batch_stage::Guest for Export {
                fn init(config_json: String) -> Result<Vec<$crate::Field>, String> {
                    let config = $crate::parse_config(&config_json)?;
                    let plugin = <$plugin as $crate::Stage>::init(config)?;
                    let reads = <$plugin as $crate::Stage>::reads(&plugin);
                    STATE.with(|s| *s.borrow_mut() = Some(plugin));
                    Ok(reads)
                }
                fn process(events: $crate::stage::PackedEvents) -> $crate::stage::Verdicts {
                    STATE.with(|s| match s.borrow_mut().as_mut() {
                        Some(p) => $crate::stage::run(p, &events),
                        None => $crate::stage::Verdicts {
                            patches: Vec::new(),
                            dropped: Vec::new(),
                            failed: (0..events.count)
                                .map(|i| (i, "plugin not initialised".into()))
                                .collect(),
                        },
                    })
                }
            }
    $crate::__rt::batch_bindings::export_batch_stage!(Export with_types_in $crate::__rt::batch_bindings);
        };
    };
}

/// Export a [`Transform`] implementation as the plugin's `stage` interface.
#[macro_export]
macro_rules! export_transform {
    ($plugin:ty) => {
        // Component exports only exist on wasm32; a native build (tests, benchmarks) of the
        // plugin crate skips them.
        // Natively the plugin is still "used", so its crate builds without dead-code noise.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn($crate::Config) -> Result<$plugin, String> = <$plugin as $crate::Transform>::init;
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static STATE: $crate::__rt::RefCell<Option<$plugin>> =
                    const { $crate::__rt::RefCell::new(None) };
            }
            struct Export;
            impl $crate::__rt::bindings::exports::auditflow::plugin::stage::Guest for Export {
                fn init(config_json: String) -> Result<(), String> {
                    let config = $crate::parse_config(&config_json)?;
                    let plugin = <$plugin as $crate::Transform>::init(config)?;
                    STATE.with(|s| *s.borrow_mut() = Some(plugin));
                    Ok(())
                }
                fn process(events: Vec<$crate::Event>) -> Vec<$crate::Outcome> {
                    STATE.with(|s| match s.borrow_mut().as_mut() {
                        Some(p) => <$plugin as $crate::Transform>::process_batch(p, events),
                        None => events
                            .iter()
                            .map(|_| $crate::Outcome::Error("plugin not initialised".into()))
                            .collect(),
                    })
                }
            }
    $crate::__rt::bindings::export_stage!(Export with_types_in $crate::__rt::bindings);
        };
    };
}

/// Export a [`Formatter`] implementation as the plugin's `format` interface.
#[macro_export]
macro_rules! export_formatter {
    ($plugin:ty) => {
        // Component exports only exist on wasm32; a native build (tests, benchmarks) of the
        // plugin crate skips them.
        // Natively the plugin is still "used", so its crate builds without dead-code noise.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn($crate::Config) -> Result<$plugin, String> = <$plugin as $crate::Formatter>::init;
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static STATE: $crate::__rt::RefCell<Option<$plugin>> =
                    const { $crate::__rt::RefCell::new(None) };
            }
            struct Export;
            impl $crate::__rt::formatter_bindings::exports::auditflow::plugin::format::Guest for Export {
                fn init(config_json: String) -> Result<(), String> {
                    let config = $crate::parse_config(&config_json)?;
                    let plugin = <$plugin as $crate::Formatter>::init(config)?;
                    STATE.with(|s| *s.borrow_mut() = Some(plugin));
                    Ok(())
                }
                fn format(events: Vec<$crate::Event>) -> Vec<Result<String, String>> {
                    STATE.with(|s| match s.borrow_mut().as_mut() {
                        Some(p) => events
                            .iter()
                            .map(|e| <$plugin as $crate::Formatter>::format(p, e))
                            .collect(),
                        None => events
                            .iter()
                            .map(|_| Err("plugin not initialised".into()))
                            .collect(),
                    })
                }
            }
    $crate::__rt::formatter_bindings::export_format!(Export with_types_in $crate::__rt::formatter_bindings);
        };
    };
}
