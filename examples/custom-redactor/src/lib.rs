//! A team's own redaction plugin: masks employee IDs (`EMP-123456`) in all metadata strings and
//! the actor id. Built by the normal `cargo build`; `examples/custom-redactor.toml` loads it.

use auditflow_sdk::json::{Visit, metadata, set_metadata, visit_strings_mut};
use auditflow_sdk::{Config, Event, Outcome, Transform};

struct EmployeeIds;

/// Replace each `EMP-` followed by exactly six digits with `[REDACTED:employee_id]`.
fn mask(text: &str) -> String {
    let (mut out, mut rest) = (String::new(), text);
    while let Some(at) = rest.find("EMP-") {
        let digits = rest[at + 4..].bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(&rest[..at]);
        let id = &rest[at..at + 4 + digits];
        out.push_str(if digits == 6 { "[REDACTED:employee_id]" } else { id });
        rest = &rest[at + 4 + digits..];
    }
    out + rest
}

impl Transform for EmployeeIds {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(EmployeeIds)
    }

    fn process(&mut self, mut event: Event) -> Outcome {
        let Ok(mut meta) = metadata(&event) else {
            return Outcome::Error("bad metadata".into());
        };
        visit_strings_mut(&mut meta, &mut |_, s| {
            *s = mask(s);
            Visit::Keep
        });
        set_metadata(&mut event, &meta);
        event.actor_id = event.actor_id.as_deref().map(mask);
        Outcome::Keep(event)
    }
}

auditflow_sdk::export_transform!(EmployeeIds);
