//! A test plugin for the observability tests: it exercises every per-stage outcome the host
//! counts, keyed on the event's `event_type` (never on its contents):
//!
//! - `drop_me`: dropped on purpose (outcome `dropped`);
//! - `fail_me`: the plugin reports an error for the event (the stage's `on_error` decides);
//! - `trap_me`: the plugin panics, which traps the instance;
//! - `hang_me`: the plugin spins until the host's `timeout_ms` cancels the call;
//! - anything else: kept unchanged.
//!
//! Built by `plugins/artifacts/build.rs` like every plugin; tests find it with
//! `auditflow_artifacts::path("drop-marker")`.

use auditflow_sdk::{Config, Event, Outcome, Transform};

struct DropMarker;

impl Transform for DropMarker {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(DropMarker)
    }

    fn process(&mut self, event: Event) -> Outcome {
        match event.event_type.as_str() {
            "drop_me" => Outcome::Drop,
            "fail_me" => Outcome::Error("event marked fail_me".into()),
            "trap_me" => panic!("event marked trap_me"),
            "hang_me" => loop {
                std::hint::spin_loop();
            },
            _ => Outcome::Keep(event),
        }
    }
}

auditflow_sdk::export_transform!(DropMarker);
