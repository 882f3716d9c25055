//! Per-batch working memory: buffers reused from one string and event to the next, so that
//! steady-state redaction does not allocate for its bookkeeping.

use crate::detectors::{Found, Hit};
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
    /// The context words found in the current string.
    pub found: Found,
}
