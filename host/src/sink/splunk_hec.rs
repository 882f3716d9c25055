//! Splunk HTTP Event Collector: `POST /services/collector/event` with envelopes stacked in one
//! body, `Authorization: Splunk <token>`, gzip; optionally indexer acknowledgement.
//!
//! - **Envelopes.** `format-splunk` writes them. A document from another formatter that is not
//!   an envelope (no `event` key) is wrapped here in a minimal one (`time`, `event`,
//!   `fields.event_id`), so any formatter (e.g. `format-ocsf`) can feed a HEC sink.
//! - **Indexer acknowledgement** (`ack = true`): every request carries the channel GUID in
//!   `X-Splunk-Request-Channel`; a 200 answer carries an `ackId`, which is polled at
//!   `/services/collector/ack` (`{"acks":[id]}` → `{"acks":{"id":true}}`) until Splunk says
//!   the batch is indexed. The delivery resends a batch not acknowledged within
//!   `ack_timeout_ms`; the cursor moves only after the acknowledgement. Splunk forgets an
//!   ackId once it has answered `true`, so each id is polled until the first `true`.

use async_trait::async_trait;
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::batch::Framing;
use super::retry::{self, Decision};
use super::transport::{Attempt, RequestBody, Transport};
use super::{AckSettings, Sink, endpoint_url, secret_header};
use crate::config::{SinkConfig, SinkKind};
use crate::event::StoredEvent;

/// The channel header (needed with indexer acknowledgement and for `/raw`).
pub const CHANNEL_HEADER: &str = "x-splunk-request-channel";

pub struct SplunkHec {
    transport: Transport,
    url: Url,
    ack_url: Url,
    ack: Option<AckSettings>,
}

impl SplunkHec {
    pub fn new(
        config: &SinkConfig,
        token: &str,
        transport: impl FnOnce(HeaderMap) -> Result<Transport, String>,
    ) -> Result<SplunkHec, String> {
        let url = endpoint_url(&config.endpoint, "/services/collector/event")?;
        let mut ack_url = url.clone();
        ack_url.set_path("/services/collector/ack");
        ack_url.set_query(None);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, secret_header(&format!("Splunk {token}"))?);
        let ack = config.ack.then(|| AckSettings::from_config(config));
        if ack.is_some() {
            let channel = match &config.channel {
                Some(c) => c.clone(),
                None => uuid::Uuid::new_v4().to_string(),
            };
            let value =
                HeaderValue::from_str(&channel).map_err(|_| "channel is not a valid header value".to_owned())?;
            headers.insert(HeaderName::from_static(CHANNEL_HEADER), value);
        }
        Ok(SplunkHec {
            transport: transport(headers)?,
            url,
            ack_url,
            ack,
        })
    }
}

#[async_trait]
impl Sink for SplunkHec {
    fn kind(&self) -> SinkKind {
        SinkKind::SplunkHec
    }

    fn framing(&self) -> Framing {
        Framing::Stacked
    }

    fn prepare(&self, doc: String, event: &StoredEvent) -> Result<String, String> {
        let parsed: Map<String, Value> =
            serde_json::from_str(&doc).map_err(|_| "the formatter's document is not a JSON object".to_owned())?;
        if parsed.contains_key("event") {
            return Ok(doc);
        }
        let us = event.event.timestamp.timestamp_micros();
        let sign = if us < 0 { "-" } else { "" };
        let (abs, id) = (us.unsigned_abs(), event.event.event_id);
        Ok(format!(
            "{{\"time\":{sign}{}.{:06},\"event\":{doc},\"fields\":{{\"event_id\":\"{id}\"}}}}",
            abs / 1_000_000,
            abs % 1_000_000
        ))
    }

    async fn send(&self, body: &RequestBody) -> Attempt {
        self.transport
            .post(&self.url, self.framing().content_type(), body)
            .await
    }

    fn classify(&self, attempt: &Attempt) -> Decision {
        retry::splunk_hec(attempt)
    }

    fn ack(&self) -> Option<AckSettings> {
        self.ack
    }

    async fn acked(&self, ack_id: u64) -> Result<bool, String> {
        let body = serde_json::to_vec(&serde_json::json!({ "acks": [ack_id] })).map_err(|e| e.to_string())?;
        let answer = self
            .transport
            .post_json(&self.ack_url, body)
            .await
            .map_err(|e| e.to_string())?;
        if answer.status != 200 {
            return Err(format!("ack poll answered HTTP {}", answer.status));
        }
        let reply: Value =
            serde_json::from_slice(&answer.body).map_err(|_| "ack poll answer is not JSON".to_owned())?;
        Ok(reply["acks"][ack_id.to_string()].as_bool().unwrap_or(false))
    }
}
