//! From HTTP body to JSON bytes: which format the sender says it posted (Content-Type), and
//! undoing its Content-Encoding under the size limits.
//!
//! Accepted Content-Types (parameters other than `charset=utf-8` are ignored; any other charset
//! is refused, JSON is UTF-8):
//! - `application/json`, or no Content-Type at all → [`BodyFormat::Json`]: one event object, an
//!   array of them, or objects simply concatenated (whitespace-separated, as senders that
//!   mislabel NDJSON produce);
//! - `application/x-ndjson`, `application/ndjson`, `application/jsonl`,
//!   `application/x-jsonlines`, `application/jsonlines` → [`BodyFormat::Ndjson`]: one object per
//!   line.
//!
//! `application/json-seq` (RFC 7464) is refused: its records may span lines and are separated by
//! RS characters, so treating it as NDJSON would misparse valid input.
//!
//! Accepted Content-Encodings: none / `identity`, `gzip` (also `x-gzip`; concatenated gzip
//! members are decoded as one stream, as RFC 1952 allows).

use std::borrow::Cow;
use std::io::Read;

use axum::http::{HeaderMap, header};
use flate2::read::MultiGzDecoder;

use super::error::ApiError;
use crate::config::Limits;

/// The body shapes `POST /v1/events` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON object, an array of objects, or concatenated objects.
    Json,
    /// Newline-delimited JSON: one object per line, blank lines ignored.
    Ndjson,
}

const ACCEPTED_TYPES: &str = "application/json, application/x-ndjson, application/ndjson, \
     application/jsonl, application/x-jsonlines, application/jsonlines";

/// Longest piece of a header value we repeat in an error message.
const MAX_ECHO: usize = 64;

impl BodyFormat {
    /// The format a Content-Type names. A missing Content-Type is taken as JSON (curl and many
    /// small senders omit it); anything we cannot read is 415 naming the type and the accepted
    /// ones.
    pub fn from_content_type(content_type: Option<&str>) -> Result<BodyFormat, ApiError> {
        let Some(content_type) = content_type else {
            return Ok(BodyFormat::Json);
        };
        let mut parts = content_type.split(';');
        let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let format = match essence.as_str() {
            "" | "application/json" => BodyFormat::Json,
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/jsonlines" => BodyFormat::Ndjson,
            other => {
                return Err(ApiError::unsupported_media_type(format!(
                    "Content-Type `{}` is not accepted; send one of: {ACCEPTED_TYPES}",
                    echo(other)
                )));
            }
        };
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("charset") {
                let value = value.trim().trim_matches('"');
                if !value.eq_ignore_ascii_case("utf-8") && !value.eq_ignore_ascii_case("utf8") {
                    return Err(ApiError::unsupported_media_type(format!(
                        "charset `{}` is not accepted; JSON must be UTF-8",
                        echo(value)
                    )));
                }
            }
        }
        Ok(format)
    }

    /// [`BodyFormat::from_content_type`] on a request's headers (a Content-Type that is not
    /// visible ASCII is 415).
    pub fn from_headers(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
        match headers.get(header::CONTENT_TYPE) {
            None => BodyFormat::from_content_type(None),
            Some(v) => match v.to_str() {
                Ok(s) => BodyFormat::from_content_type(Some(s)),
                Err(_) => Err(ApiError::unsupported_media_type(format!(
                    "Content-Type is not readable text; send one of: {ACCEPTED_TYPES}"
                ))),
            },
        }
    }
}

/// A request's Content-Encoding header, for [`decode`]. A value that is not visible ASCII is
/// 415 (passing it on as "no encoding" would parse compressed bytes as JSON).
pub fn content_encoding(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    match headers.get(header::CONTENT_ENCODING) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            ApiError::unsupported_media_type("Content-Encoding is not readable text; send gzip or no encoding")
        }),
    }
}

/// The body as JSON bytes: checked against `max_body_bytes` as sent, then gunzipped if
/// `content_encoding` says so, stopping with 413 as soon as the output passes
/// `max_decompressed_bytes` (a gzip bomb costs at most that much memory and work).
///
/// Errors: 413 over a limit, 415 for an unknown encoding, 400 for corrupt or truncated gzip.
pub fn decode<'a>(body: &'a [u8], content_encoding: Option<&str>, limits: &Limits) -> Result<Cow<'a, [u8]>, ApiError> {
    if body.len() > limits.max_body_bytes {
        return Err(ApiError::too_large(format!(
            "body is {} bytes; max_body_bytes is {}",
            body.len(),
            limits.max_body_bytes
        )));
    }
    let coding = content_encoding.map(str::trim).unwrap_or("");
    if coding.is_empty() || coding.eq_ignore_ascii_case("identity") {
        return Ok(Cow::Borrowed(body));
    }
    if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
        return inflate_bounded(MultiGzDecoder::new(body), body.len(), limits.max_decompressed_bytes).map(Cow::Owned);
    }
    Err(ApiError::unsupported_media_type(format!(
        "Content-Encoding `{}` is not accepted; send gzip or no encoding",
        echo(coding)
    )))
}

/// Read a decompressing reader to its end, but never more than `limit` bytes of output.
fn inflate_bounded(decoder: impl Read, compressed_len: usize, limit: usize) -> Result<Vec<u8>, ApiError> {
    // Audit JSON compresses ~5-10x; start there so typical bodies need few reallocations,
    // never reserving more than the limit.
    let mut out = Vec::with_capacity(compressed_len.saturating_mul(8).min(limit.saturating_add(1)));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    match decoder.take(cap).read_to_end(&mut out) {
        Ok(_) if out.len() > limit => Err(ApiError::too_large(format!(
            "gzip body inflates past max_decompressed_bytes ({limit} bytes)"
        ))),
        Ok(_) => Ok(out),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ApiError::bad_request("gzip body is truncated")),
        // flate2's messages are static ("corrupt deflate stream", ...), but a fixed message is
        // simplest to keep free of body contents.
        Err(_) => Err(ApiError::bad_request("body is not valid gzip")),
    }
}

/// A header value shortened for an error message.
fn echo(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// `zeros` bytes of zeros, gzipped, without ever holding them uncompressed.
    fn gzip_bomb(zeros: usize) -> Vec<u8> {
        let chunk = vec![0u8; 1 << 20];
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        let mut left = zeros;
        while left > 0 {
            let n = left.min(chunk.len());
            enc.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        enc.finish().unwrap()
    }

    #[test]
    fn json_content_types_select_json() {
        for ct in [
            None,
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("Application/JSON;charset=\"UTF-8\""),
        ] {
            assert_eq!(BodyFormat::from_content_type(ct), Ok(BodyFormat::Json), "{ct:?}");
        }
    }

    #[test]
    fn ndjson_content_types_select_ndjson() {
        for ct in [
            "application/x-ndjson",
            "application/ndjson",
            "application/jsonl",
            "application/x-jsonlines",
            "application/x-ndjson; charset=utf-8",
        ] {
            assert_eq!(BodyFormat::from_content_type(Some(ct)), Ok(BodyFormat::Ndjson), "{ct}");
        }
    }

    #[test]
    fn unknown_content_type_is_415_naming_it_and_the_accepted_ones() {
        let e = BodyFormat::from_content_type(Some("text/plain")).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(e.error.contains("`text/plain`"), "{}", e.error);
        assert!(e.error.contains("application/x-ndjson"), "{}", e.error);
    }

    #[test]
    fn json_seq_is_refused() {
        let e = BodyFormat::from_content_type(Some("application/json-seq")).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn non_utf8_charset_is_415() {
        let e = BodyFormat::from_content_type(Some("application/json; charset=latin1")).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(e.error.contains("latin1"), "{}", e.error);
    }

    #[test]
    fn content_type_is_read_from_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(BodyFormat::from_headers(&headers), Ok(BodyFormat::Json));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
        assert_eq!(BodyFormat::from_headers(&headers), Ok(BodyFormat::Ndjson));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_bytes(b"application/\xffjson").unwrap(),
        );
        assert_eq!(
            BodyFormat::from_headers(&headers).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn unreadable_content_encoding_is_415_not_identity() {
        let mut headers = HeaderMap::new();
        assert_eq!(content_encoding(&headers), Ok(None));
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(content_encoding(&headers), Ok(Some("gzip")));
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_bytes(b"gz\xffip").unwrap());
        assert_eq!(
            content_encoding(&headers).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn identity_body_is_borrowed_unchanged() {
        let body = br#"{"a":1}"#;
        for coding in [None, Some("identity"), Some("")] {
            let out = decode(body, coding, &Limits::default()).unwrap();
            assert!(matches!(out, Cow::Borrowed(_)), "{coding:?}");
            assert_eq!(&*out, body);
        }
    }

    #[test]
    fn gzip_round_trips() {
        let body = br#"[{"event_type":"x","timestamp":1}]"#;
        let compressed = gzip(body);
        for coding in ["gzip", "x-gzip", "GZIP"] {
            let out = decode(&compressed, Some(coding), &Limits::default()).unwrap();
            assert_eq!(&*out, body, "{coding}");
        }
    }

    #[test]
    fn concatenated_gzip_members_are_decoded_as_one_body() {
        let mut twice = gzip(b"{\"a\":1}\n");
        twice.extend(gzip(b"{\"a\":2}\n"));
        let out = decode(&twice, Some("gzip"), &Limits::default()).unwrap();
        assert_eq!(&*out, b"{\"a\":1}\n{\"a\":2}\n");
    }

    #[test]
    fn unknown_encoding_is_415_naming_it() {
        let e = decode(b"{}", Some("br"), &Limits::default()).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(e.error.contains("`br`"), "{}", e.error);
    }

    #[test]
    fn body_over_max_body_bytes_is_413_naming_the_limit() {
        let limits = Limits {
            max_body_bytes: 10,
            ..Limits::default()
        };
        let e = decode(&[b' '; 11], None, &limits).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.error.contains("max_body_bytes is 10"), "{}", e.error);
        assert!(decode(&[b' '; 10], None, &limits).is_ok());
    }

    #[test]
    fn compressed_size_counts_against_max_body_bytes() {
        let compressed = gzip(&[b'x'; 1000]);
        let limits = Limits {
            max_body_bytes: compressed.len() - 1,
            ..Limits::default()
        };
        let e = decode(&compressed, Some("gzip"), &limits).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn inflating_past_max_decompressed_bytes_is_413() {
        let limits = Limits {
            max_decompressed_bytes: 100,
            ..Limits::default()
        };
        assert_eq!(decode(&gzip(&[b'x'; 100]), Some("gzip"), &limits).unwrap().len(), 100);
        let e = decode(&gzip(&[b'x'; 101]), Some("gzip"), &limits).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.error.contains("max_decompressed_bytes (100 bytes)"), "{}", e.error);
    }

    /// Counts how much compressed input the decoder pulled.
    struct CountingReader<'a> {
        inner: &'a [u8],
        read: usize,
    }

    impl Read for CountingReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read += n;
            Ok(n)
        }
    }

    #[test]
    fn gzip_bomb_is_refused_without_inflating_it_whole() {
        // 1 GiB of zeros is ~1 MB compressed: small enough to pass max_body_bytes.
        let bomb = gzip_bomb(1 << 30);
        let limits = Limits::default();
        assert!(bomb.len() <= limits.max_body_bytes, "bomb is {} bytes", bomb.len());

        let e = decode(&bomb, Some("gzip"), &limits).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);

        // And it stopped early: inflating 32 MiB of output consumed only a small prefix of the
        // compressed input (the whole bomb would need all of it).
        let mut counting = CountingReader { inner: &bomb, read: 0 };
        let e = inflate_bounded(
            MultiGzDecoder::new(&mut counting),
            bomb.len(),
            limits.max_decompressed_bytes,
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            counting.read < bomb.len() / 4,
            "read {} of {} compressed bytes",
            counting.read,
            bomb.len()
        );
    }

    #[test]
    fn corrupt_gzip_is_400() {
        let mut body = gzip(br#"{"event_type":"x"}"#);
        let mid = body.len() / 2;
        body[mid] ^= 0xff;
        body[mid + 1] ^= 0xff;
        let e = decode(&body, Some("gzip"), &Limits::default()).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);

        let e = decode(b"{\"not\": \"gzip\"}", Some("gzip"), &Limits::default()).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn truncated_gzip_is_400() {
        let body = gzip(&[b'x'; 10_000]);
        let e = decode(&body[..body.len() / 2], Some("gzip"), &Limits::default()).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.error.contains("truncated"), "{}", e.error);
    }
}
