//! The generic HTTP sink: `POST` newline-delimited JSON (`application/x-ndjson`, one document
//! per line) to any URL, with an optional `Authorization: Bearer <token>`. The usual body is
//! OCSF (`format-ocsf`, the default formatter here) for a data lake, a collector or a SIEM
//! without a dedicated sink.

use async_trait::async_trait;
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde_json::Value;

use super::batch::Framing;
use super::retry::{self, Decision};
use super::transport::{Attempt, RequestBody, Transport};
use super::{Sink, endpoint_url, secret_header};
use crate::config::{SinkConfig, SinkKind};
use crate::event::StoredEvent;

pub struct HttpNdjson {
    transport: Transport,
    url: Url,
}

impl HttpNdjson {
    pub fn new(
        config: &SinkConfig,
        token: Option<&str>,
        transport: impl FnOnce(HeaderMap) -> Result<Transport, String>,
    ) -> Result<HttpNdjson, String> {
        let url = endpoint_url(&config.endpoint, "")?;
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            headers.insert(AUTHORIZATION, secret_header(&format!("Bearer {token}"))?);
        }
        Ok(HttpNdjson {
            transport: transport(headers)?,
            url,
        })
    }
}

#[async_trait]
impl Sink for HttpNdjson {
    fn kind(&self) -> SinkKind {
        SinkKind::Http
    }

    fn framing(&self) -> Framing {
        Framing::Ndjson
    }

    fn prepare(&self, doc: String, _event: &StoredEvent) -> Result<String, String> {
        let value: Value = serde_json::from_str(&doc).map_err(|_| "the formatter's document is not JSON".to_owned())?;
        // One document per line: a pretty-printed document is written compactly (a raw newline
        // in JSON can only be whitespace).
        if doc.contains('\n') {
            return serde_json::to_string(&value).map_err(|e| e.to_string());
        }
        Ok(doc)
    }

    async fn send(&self, body: &RequestBody) -> Attempt {
        self.transport
            .post(&self.url, self.framing().content_type(), body)
            .await
    }

    fn classify(&self, attempt: &Attempt) -> Decision {
        retry::http(attempt)
    }
}
