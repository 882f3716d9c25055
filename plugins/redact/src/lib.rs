//! The reference redaction plugin: removes PII and secrets from audit events.
//!
//! [`Redactor`] owns the compiled config and the per-event work: typed fields are scanned or
//! replaced per the config, then every value in `metadata`. [`RedactPlugin`] exports it as a
//! Wasm `transform` stage. The pieces live in their own modules: `config` (parsing and
//! checking the stage config), `detectors` (the pattern detectors), `secrets` (secrets found
//! by key name), `actions` (mask, hash, drop), `metadata` (the pass over the metadata JSON),
//! `normalize` (detection on an NFKC, zero-width-free view of the text), `scratch` (buffers
//! reused across a batch) and `swar` (word-at-a-time byte searches). See README.md for the
//! config reference.

mod actions;
mod config;
mod detectors;
mod metadata;
mod normalize;
mod runs;
mod scratch;
mod secrets;
mod swar;

use auditflow_sdk::stage::{EventFields, apply};
use auditflow_sdk::{Config, Event, EventPatch, Field, Outcome, Patchable, Stage, fields};

use crate::actions::{Action, Hasher, Rewrite};
use crate::config::FieldRule;
use crate::detectors::{Detector, Detectors, Within};
use crate::metadata::MetaRules;
use crate::scratch::Scratch;
use crate::secrets::SecretKeys;

/// What happens to one typed field.
#[derive(Debug, Clone, Copy)]
enum TypedPlan {
    /// Run the detectors over it.
    Scan,
    /// Replace it as a whole (`fields`, `deny_fields`).
    Whole(Action),
}

/// A compiled redaction config. Build it once with [`Redactor::from_config`]; one instance
/// serves any number of events, from any number of threads. Its only mutable state is the
/// memo of recent pseudonyms.
pub struct Redactor {
    detectors: Detectors,
    secrets: SecretKeys,
    actions: [Action; Detector::COUNT],
    hasher: Hasher,
    /// Typed fields with something to do (resolved once here, not matched by name on every
    /// event).
    typed: Vec<(Field, Patchable, TypedPlan)>,
    meta: MetaRules,
}

impl Redactor {
    /// Compile the stage config (see README.md). Errors name the offending key.
    pub fn from_config(config: &serde_json::Value) -> Result<Redactor, String> {
        let settings = config::parse(config)?;
        let typed = fields::TEXT_FIELDS
            .iter()
            .filter_map(|&name| {
                let plan = match settings.fields.get(name) {
                    Some(FieldRule::Allow) => return None,
                    Some(FieldRule::Redact(action)) => TypedPlan::Whole(*action),
                    None if settings.scan_fields.contains(&name) => TypedPlan::Scan,
                    None => return None,
                };
                let field = fields::field_named(name)?;
                Some((field, auditflow_sdk::stage::patchable(field)?, plan))
            })
            .collect();
        Ok(Redactor {
            detectors: Detectors::with_context(&settings.detectors, &settings.context_words, settings.context_window),
            secrets: SecretKeys::new(&settings.secret_keys).with_generic(settings.generic()),
            actions: settings.actions,
            hasher: Hasher::new(settings.hash_key.as_deref()),
            typed,
            meta: MetaRules::new(&settings.fields),
        })
    }

    /// The fields the stage reads: the typed fields it scans or replaces, and metadata.
    pub fn reads(&self) -> Vec<Field> {
        let mut reads: Vec<Field> = self.typed.iter().map(|&(f, _, _)| f).collect();
        if !self.meta.skip_all() {
            reads.push(Field::Metadata);
        }
        reads
    }

    /// Redact one event as contract 1.1 sees it: patches for what changed. Fails only if
    /// `metadata` is not valid JSON; the event must then not pass on, as nothing in its
    /// metadata was checked.
    pub fn redact_patch(&self, event: &mut EventPatch<'_>) -> Result<(), String> {
        self.redact_patch_with(event, &mut Scratch::default())
    }

    fn redact_patch_with(&self, event: &mut EventPatch<'_>, scratch: &mut Scratch) -> Result<(), String> {
        for &(field, patchable, plan) in &self.typed {
            let Some(value) = event.get(field) else {
                continue;
            };
            let rewrite = match plan {
                TypedPlan::Scan => self.rewrite_text(value, Within::default(), scratch),
                TypedPlan::Whole(action) => actions::whole(action, "field", value, &self.hasher),
            };
            match rewrite {
                Rewrite::Unchanged => {}
                Rewrite::Changed(new) => event.set(patchable, Some(new)),
                Rewrite::Drop => event.set(patchable, None),
            }
        }
        let Some(text) = event.metadata() else {
            return Ok(());
        };
        if text.is_empty() || self.meta.skip_all() {
            return Ok(());
        }
        if let Some(redacted) = metadata::redact(self, text, scratch)? {
            event.set(Patchable::Metadata, Some(redacted));
        }
        Ok(())
    }

    /// Redact one whole event in place (the same work as [`redact_patch`](Self::redact_patch),
    /// for native tests and benchmarks).
    pub fn redact(&self, event: &mut Event) -> Result<(), String> {
        self.redact_with(event, &mut Scratch::default())
    }

    fn redact_with(&self, event: &mut Event, scratch: &mut Scratch) -> Result<(), String> {
        let patches = {
            let fields = EventFields::of(event);
            let mut patch = fields.patch(event);
            self.redact_patch_with(&mut patch, scratch)?;
            patch.take_patches()
        };
        if !apply(patches, event) {
            return Err("a patch could not apply".into());
        }
        Ok(())
    }

    /// Redact a batch of whole events: one outcome per event, in order. Events are never
    /// dropped here (`drop` removes fields, not events); an event whose metadata is not JSON
    /// becomes an error.
    pub fn redact_batch(&self, events: Vec<Event>) -> Vec<Outcome> {
        let mut scratch = Scratch::default();
        events
            .into_iter()
            .map(|mut event| match self.redact_with(&mut event, &mut scratch) {
                Ok(()) => Outcome::Keep(event),
                Err(e) => Outcome::Error(e),
            })
            .collect()
    }

    /// What the detectors find in the text of a scanned typed field, as `(start, end,
    /// detector)` byte spans of `text`: the fuzz target `fuzz/fuzz_targets/redactor.rs` checks
    /// with it that no matched value survives redaction. Not part of the plugin's API.
    #[doc(hidden)]
    pub fn typed_field_matches(&self, text: &str) -> Vec<(usize, usize, &'static str)> {
        let mut scratch = Scratch::default();
        self.find(text, Within::default(), &mut scratch);
        scratch
            .hits
            .iter()
            .map(|h| (h.start, h.end, h.detector.name()))
            .collect()
    }

    /// Find everything in `text`, into `scratch.hits`; `within` says where it sits.
    fn find(&self, text: &str, within: Within, scratch: &mut Scratch) {
        normalize::find(
            &self.detectors,
            &self.secrets,
            text,
            within,
            &mut scratch.hits,
            &mut scratch.view,
            &mut scratch.found,
        );
    }

    /// Find everything in `text` and rewrite it.
    fn rewrite_text(&self, text: &str, within: Within, scratch: &mut Scratch) -> Rewrite {
        self.find(text, within, scratch);
        actions::rewrite(text, &mut scratch.hits, &self.actions, &self.hasher)
    }
}

/// The Wasm stage (contract 1.1): a [`Redactor`] built from the stage config, with buffers
/// reused across batches.
pub struct RedactPlugin(pub Redactor, Scratch);

impl Stage for RedactPlugin {
    fn init(config: Config) -> Result<Self, String> {
        Redactor::from_config(&config).map(|r| RedactPlugin(r, Scratch::default()))
    }

    fn reads(&self) -> Vec<Field> {
        self.0.reads()
    }

    fn process(&mut self, event: &mut EventPatch<'_>) {
        if let Err(e) = self.0.redact_patch_with(event, &mut self.1) {
            event.fail(e);
        }
    }
}

#[cfg(all(target_arch = "wasm32", not(feature = "contract-1-0")))]
auditflow_sdk::export_stage!(RedactPlugin);

/// The same redactor on contract 1.0 (whole events in and out), built only with the
/// `contract-1-0` feature: the host's tests run it beside the 1.1 build to show both contracts
/// store the same rows (`tests/spine.rs`).
#[cfg(feature = "contract-1-0")]
pub struct RedactV10(Redactor);

#[cfg(feature = "contract-1-0")]
impl auditflow_sdk::Transform for RedactV10 {
    fn init(config: Config) -> Result<Self, String> {
        Redactor::from_config(&config).map(RedactV10)
    }

    fn process(&mut self, mut event: Event) -> Outcome {
        match self.0.redact(&mut event) {
            Ok(()) => Outcome::Keep(event),
            Err(e) => Outcome::Error(e),
        }
    }

    fn process_batch(&mut self, events: Vec<Event>) -> Vec<Outcome> {
        self.0.redact_batch(events)
    }
}

#[cfg(all(target_arch = "wasm32", feature = "contract-1-0"))]
auditflow_sdk::export_transform!(RedactV10);

#[cfg(test)]
mod tests;
