//! Per-batch working memory: buffers reused from one string and event to the next, so that
//! steady-state redaction does not allocate for its bookkeeping.

use crate::detectors::Hit;
use crate::metadata::Edit;
use crate::normalize::View;

#[derive(Default)]
pub struct Scratch {
    pub hits: Vec<Hit>,
    pub edits: Vec<Edit>,
    /// Replacement text of the metadata edits, written once, already as JSON.
    pub buf: String,
    /// The normalised view of the current string, when it has one.
    pub view: View,
    /// The JSON key holding the current string, after its parent's and a newline (the
    /// context of context words and `generic_secret`); empty for typed fields.
    pub key: String,
}
