//! HTTP ingest: the routes senders post to, from the raw request to the acknowledgement.
//!
//! A request is authenticated, size-checked, decompressed, parsed into canonical events
//! (all-or-nothing), run through the pipeline, and committed; the 200 goes out only after the
//! commit. Submodules own one step each: [`auth`], [`body`], [`parse`], [`sark`], [`error`].

pub mod auth;
pub mod body;
pub mod error;
pub mod intake;
pub mod parse;
pub mod sark;

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;

use crate::config::Limits;
use crate::event::Event;
use crate::pipeline::{FailureKind, PipelineSlot};
use crate::slot::Slot;
use crate::store::{CommitError, GroupCommit, QuarantineRecord, Store};
use crate::telemetry::metrics;
use crate::telemetry::metrics::AuthFailure;
pub use error::ApiError;

/// Route templates of the ingest routes, as mounted and as the `route` metric label.
pub const EVENTS_ROUTE: &str = "/v1/events";
pub const SARK_ROUTE: &str = "/api/v1/gateway/audit";

/// What the ingest routes need.
pub struct IngestState {
    /// Tokens and client-certificate mappings; replaced on reload.
    pub auth: Arc<Slot<auth::Auth>>,
    pub limits: Limits,
    pub pipeline: Arc<PipelineSlot>,
    pub commit: GroupCommit,
    /// For quarantine records (events are written through `commit`).
    pub store: Arc<dyn Store>,
    /// Request-body bytes held at once (`max_in_flight_body_bytes`).
    pub budget: intake::BodyBudget,
}

/// The acknowledgement: sent only after every stored event is committed.
#[derive(Debug, Serialize)]
pub struct Ack {
    /// Events newly stored by this request.
    pub accepted: usize,
    /// Events already stored earlier (same `event_id`): skipped, still safe.
    pub duplicates: usize,
    /// Events a stage dropped on purpose or by its `drop` error policy: not stored.
    pub dropped: usize,
    /// Events a stage failed on under its `quarantine` policy: a quarantine record (event id,
    /// stage, error) is stored instead of the event.
    pub quarantined: usize,
    /// The id of every event in the request, in order (generated ones included).
    pub event_ids: Vec<uuid::Uuid>,
}

/// `POST /v1/events`: one JSON event, a JSON array of events, or NDJSON; gzip allowed.
pub async fn post_events(
    State(state): State<Arc<IngestState>>,
    client: Option<Extension<Arc<auth::ClientIdentity>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Ack>, ApiError> {
    let source = authenticate(&state, client, auth::bearer(&headers), EVENTS_ROUTE)?;
    let format = body::BodyFormat::from_headers(&headers)?;
    let encoding = body::content_encoding(&headers)?;
    let (raw, mut hold) = intake::read_body(&headers, body, &state.limits, &state.budget).await?;
    metrics().ingest.body_received(EVENTS_ROUTE, raw.len());
    let decoded = decode(&raw, encoding, &state.limits, &mut hold)?;
    let events = parse::parse_events(&decoded, format, &state.limits, &source)?;
    hold.take(decoded.len().saturating_mul(intake::PARSED_EVENTS_FACTOR))?;
    metrics().ingest.events_received(EVENTS_ROUTE, &events);
    accept(&state, events).await.map(Json)
}

/// SARK's answer shape (`201 {"audit_id": …, "status": "logged"}`) plus our ack's counts.
#[derive(Debug, Serialize)]
pub struct SarkAck {
    /// The (first) stored event's id, as SARK's own endpoint returns it.
    pub audit_id: Option<uuid::Uuid>,
    pub status: &'static str,
    #[serde(flatten)]
    pub ack: Ack,
}

/// `POST /api/v1/gateway/audit`: SARK's `GatewayAuditEvent`, authenticated by
/// `X-Gateway-Api-Key` (or a bearer token), answered like SARK answers, so SARK's gateway can
/// switch unchanged.
pub async fn post_sark(
    State(state): State<Arc<IngestState>>,
    client: Option<Extension<Arc<auth::ClientIdentity>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<SarkAck>), ApiError> {
    let presented = auth::gateway_api_key(&headers).or_else(|| auth::bearer(&headers));
    let source = authenticate(&state, client, presented, SARK_ROUTE)?;
    let encoding = body::content_encoding(&headers)?;
    let (raw, mut hold) = intake::read_body(&headers, body, &state.limits, &state.budget).await?;
    metrics().ingest.body_received(SARK_ROUTE, raw.len());
    let decoded = decode(&raw, encoding, &state.limits, &mut hold)?;
    let events = sark::parse_sark(&decoded, &state.limits, &source)?;
    hold.take(decoded.len().saturating_mul(intake::PARSED_EVENTS_FACTOR))?;
    metrics().ingest.events_received(SARK_ROUTE, &events);
    let ack = accept(&state, events).await?;
    let audit_id = ack.event_ids.first().copied();
    Ok((
        StatusCode::CREATED,
        Json(SarkAck {
            audit_id,
            status: "logged",
            ack,
        }),
    ))
}

/// The request's source: its verified client certificate's mapped name, else its token's.
fn authenticate(
    state: &IngestState,
    client: Option<Extension<Arc<auth::ClientIdentity>>>,
    presented: Option<&[u8]>,
    route: &'static str,
) -> Result<String, ApiError> {
    let client = client.as_ref().map(|Extension(c)| c.as_ref());
    state
        .auth
        .current()
        .source(client, presented)
        .map(str::to_owned)
        .ok_or_else(|| {
            let reason = if presented.is_some() {
                AuthFailure::Invalid
            } else {
                AuthFailure::Missing
            };
            metrics().ingest.auth_failed(route, reason);
            ApiError::unauthorized()
        })
}

/// Undo the body's Content-Encoding; inflated bytes are held from the body budget too.
fn decode<'a>(
    raw: &'a [u8],
    encoding: Option<&str>,
    limits: &Limits,
    hold: &mut intake::BudgetHold,
) -> Result<std::borrow::Cow<'a, [u8]>, ApiError> {
    let decoded = body::decode(raw, encoding, limits)?;
    if let std::borrow::Cow::Owned(inflated) = &decoded {
        hold.take(inflated.len())?;
    }
    Ok(decoded)
}

/// Run the pipeline and commit; answer only after the commit.
async fn accept(state: &IngestState, events: Vec<Event>) -> Result<Ack, ApiError> {
    let event_ids: Vec<uuid::Uuid> = events.iter().map(|e| e.event_id).collect();
    // Every event of a request has the request's authenticated source.
    let source = events.first().map(|e| e.source.clone()).unwrap_or_default();
    let total = events.len();
    // Take the pipeline once: a reload mid-request does not change this request's chain.
    let pipeline = state.pipeline.current();
    let output = pipeline.run(events).await.map_err(|r| {
        tracing::warn!(stage = %r.stage, error = %r.message, "pipeline rejected request");
        let error = match r.kind {
            // The event itself: the same request fails the same way again.
            FailureKind::Reported => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("stage `{}` reported an error for this event and its error policy is reject", r.stage),
            ),
            FailureKind::Timeout { timeout_ms } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "stage `{}` did not finish this event within its timeout_ms ({timeout_ms} ms) and its error policy is reject",
                    r.stage
                ),
            ),
            // The plugin trapped or broke the contract: its fault, not the sender's.
            FailureKind::Fault => ApiError::internal(format!(
                "stage `{}` failed on this event (the plugin trapped or broke the contract) and its error policy is reject",
                r.stage
            )),
        };
        match r.index {
            Some(index) => error.with_index(index),
            None => error,
        }
    })?;
    let quarantined = output.quarantined.len();
    let dropped = total - output.kept.len() - quarantined;
    if quarantined > 0 {
        // Written before the events and idempotent per (event, stage): a client retrying after
        // a failure below records nothing twice.
        let records: Vec<QuarantineRecord> = output
            .quarantined
            .into_iter()
            .map(|q| QuarantineRecord {
                source: source.clone(),
                event_id: q.event_id,
                stage: q.stage,
                error: q.error,
            })
            .collect();
        state.store.quarantine(&records).await.map_err(|e| {
            tracing::error!(error = %e, "cannot store quarantine records; refusing the request");
            ApiError::unavailable(5)
        })?;
    }
    if output.kept.is_empty() {
        return Ok(Ack {
            accepted: 0,
            duplicates: 0,
            dropped,
            quarantined,
            event_ids,
        });
    }
    let receipt = state.commit.commit(output.kept).await.map_err(|e| match e {
        CommitError::Overloaded => ApiError::unavailable(1),
        CommitError::TooLarge => ApiError::too_large("request has more events than the store queue holds"),
        CommitError::Unavailable(msg) => {
            tracing::error!(error = %msg, "store unavailable; refusing events");
            ApiError::unavailable(5)
        }
        CommitError::ShuttingDown => ApiError::unavailable(5),
        // Sending the same events again fails the same way: not a 503.
        CommitError::Rejected(reason) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the store refused this request's events ({reason}); the other requests committed with it were stored"
            ),
        ),
    })?;
    Ok(Ack {
        accepted: receipt.stored,
        duplicates: receipt.duplicates,
        dropped,
        quarantined,
        event_ids,
    })
}
