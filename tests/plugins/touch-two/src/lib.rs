//! A contract 1.1 test plugin that reads two fields and changes one: every event with a
//! `tool-name` gets it rewritten to `<tool-name>@<length of actor-id>` (0 without an actor).
//! The boundary benchmark (bench/benches/boundary.rs) measures what a stage of that shape costs
//! per event; the tests use it beside 1.0 plugins in one pipeline.
//!
//! Config `{"patch": "bad-decision"}` makes it break the contract instead (it sets `decision` to
//! `maybe`), for the tests that show the host refuses such a patch. It cannot even try to patch
//! `event-id` or `source`: the patch type has no way to name them (the SDK's compile-fail tests in
//! `plugins/sdk/src/stage.rs` show it).

use auditflow_sdk::{Config, EventPatch, Field, Patchable, Stage};

struct TouchTwo {
    bad_decision: bool,
}

impl Stage for TouchTwo {
    fn init(config: Config) -> Result<Self, String> {
        let bad_decision = match config.get("patch").and_then(|v| v.as_str()) {
            None => false,
            Some("bad-decision") => true,
            Some(other) => return Err(format!("unknown patch mode {other:?}")),
        };
        Ok(TouchTwo { bad_decision })
    }

    fn reads(&self) -> Vec<Field> {
        vec![Field::ActorId, Field::ToolName]
    }

    fn process(&mut self, event: &mut EventPatch<'_>) {
        if self.bad_decision {
            event.set(Patchable::Decision, Some("maybe".into()));
            return;
        }
        if let Some(tool) = event.tool_name() {
            let actor = event.actor_id().map_or(0, str::len);
            let new = format!("{tool}@{actor}");
            event.set(Patchable::ToolName, Some(new));
        }
    }
}

auditflow_sdk::export_stage!(TouchTwo);
