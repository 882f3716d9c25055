//! Datadog Logs intake v2: `POST /api/v2/logs` with a JSON array of log items,
//! `DD-API-KEY: <key>`, gzip. At most 1000 items and 5 MB uncompressed per request (enforced
//! by the config check and the batch limits). A 202 means accepted for processing: Datadog
//! has no acknowledgement or dedup, so the `event_id` attribute is what lets a search dedupe
//! the copies at-least-once delivery can make.

use async_trait::async_trait;
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName};
use serde_json::{Map, Value};

use super::batch::Framing;
use super::retry::{self, Decision};
use super::transport::{Attempt, RequestBody, Transport};
use super::{Sink, endpoint_url, secret_header};
use crate::config::{SinkConfig, SinkKind};
use crate::event::StoredEvent;

pub struct DatadogLogs {
    transport: Transport,
    url: Url,
}

impl DatadogLogs {
    pub fn new(
        config: &SinkConfig,
        key: &str,
        transport: impl FnOnce(HeaderMap) -> Result<Transport, String>,
    ) -> Result<DatadogLogs, String> {
        let url = endpoint_url(&config.endpoint, "/api/v2/logs")?;
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static("dd-api-key"), secret_header(key)?);
        Ok(DatadogLogs {
            transport: transport(headers)?,
            url,
        })
    }
}

#[async_trait]
impl Sink for DatadogLogs {
    fn kind(&self) -> SinkKind {
        SinkKind::DatadogLogs
    }

    fn framing(&self) -> Framing {
        Framing::JsonArray
    }

    fn prepare(&self, doc: String, _event: &StoredEvent) -> Result<String, String> {
        // Each array item is an HTTPLogItem: a JSON object.
        serde_json::from_str::<Map<String, Value>>(&doc)
            .map_err(|_| "the formatter's document is not a JSON object".to_owned())?;
        Ok(doc)
    }

    async fn send(&self, body: &RequestBody) -> Attempt {
        self.transport
            .post(&self.url, self.framing().content_type(), body)
            .await
    }

    fn classify(&self, attempt: &Attempt) -> Decision {
        retry::datadog_logs(attempt)
    }
}
