//! Request body → canonical [`Event`]s, all or nothing.
//!
//! # Body shapes
//! - [`BodyFormat::Json`]: one event object, an array of event objects, or event objects
//!   concatenated with optional whitespace between them (senders that mislabel NDJSON as JSON
//!   produce that; accepting it costs nothing).
//! - [`BodyFormat::Ndjson`]: one event object per line; blank lines are ignored. A leading UTF-8
//!   byte-order mark is skipped in both.
//!
//! # Limits (from `[server.limits]`)
//! - more than `max_events` events → 413 (counting stops there, the rest is not parsed);
//! - an event longer than `max_event_bytes` **as sent** (its bytes in the body, whitespace
//!   included) → 413 with its `index`;
//! - nesting deeper than `max_depth` (the event object is depth 1) → 422 with its `index` and the
//!   top-level `field` the deep value is in. serde_json also stops at 128 levels whatever
//!   `max_depth` says; that is reported the same way, so a deep body can never overflow a stack.
//!
//! # Errors
//! Malformed JSON is 400 with the 1-based `line` and `column` (bytes) in the decompressed body;
//! for NDJSON, the line is the body line. A well-formed event that breaks the schema is 422 with
//! its 0-based `index` and the `field`. The first error fails the whole request. Messages never
//! contain values from the body: only indexes, field names, positions and limits.
//!
//! # The canonical schema (strict)
//! | field | rule |
//! |---|---|
//! | `event_type` | required, non-empty string |
//! | `timestamp` | required: RFC 3339 string **with** an offset (`Z` or `±hh:mm`), or a number of unix seconds (fraction allowed), or unix **milliseconds** when the number is ≥ 1e11 (1e11 s would be the year 5138; 1e11 ms is March 1973). Stored UTC, truncated to microseconds; must fall in the years 1970..=9999 (UTC) |
//! | `event_id` | optional UUID string (the idempotency key; nil and max UUIDs are refused). Absent → a new UUIDv7 |
//! | `actor` | optional object with optional string `type` and `id`, nothing else |
//! | `agent_id`, `server_name`, `tool_name`, `outcome`, `reason`, `request_id`, `correlation_id`, `source_ip` | optional strings |
//! | `decision` | optional, `allow` or `deny` |
//! | `metadata` | optional object: **where senders put anything else** |
//!
//! Each typed field has a length limit in UTF-8 bytes ([`FIELD_LIMITS`](crate::event::FIELD_LIMITS):
//! `event_type` 128, `actor.id` 512, `request_id` 256, …; metadata keys 256); a longer one is
//! 422 naming the field and the limit. U+0000 in any string becomes U+FFFD and a metadata
//! `-0.0` becomes `0.0` ([`Event::normalize`]), the same on both stores.
//!
//! `null` counts as absent everywhere. Any other top-level field is refused (422 naming it), so a
//! typo never silently drops data; extra data belongs in `metadata`. `source` is set from the
//! ingest token that authenticated the request — a `source` in the body is refused like any
//! unknown field.
//!
//! # Cost
//! Every event is parsed once, straight into a `serde_json::Value`; its size comes from byte
//! offsets in the body (no re-serialisation), its fields are moved (not cloned) into the
//! [`Event`].

use chrono::{DateTime, Datelike, Utc};
use serde_json::{Map, Number, Value};
use uuid::Uuid;

use super::body::BodyFormat;
use super::error::ApiError;
use crate::config::Limits;
use crate::event::{Actor, Decision, Event, to_micros};

/// Parse a decompressed body into canonical events (see the module docs for the rules).
/// `source` is the name of the ingest token that authenticated the request.
pub fn parse_events(body: &[u8], format: BodyFormat, limits: &Limits, source: &str) -> Result<Vec<Event>, ApiError> {
    let mut events = Vec::new();
    for_each_event_object(body, format, limits, |index, object| {
        events.push(canonical_event(index, object, source)?);
        Ok(())
    })?;
    Ok(events)
}

/// Split a body into its event objects and hand each to `each` with its index, enforcing
/// syntax (400), `max_events` and `max_event_bytes` (413), object-ness and `max_depth` (422).
/// A body with no events at all is 400. Shared by the canonical and the compatibility routes.
pub(crate) fn for_each_event_object(
    body: &[u8],
    format: BodyFormat,
    limits: &Limits,
    each: impl FnMut(usize, Map<String, Value>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut splitter = Splitter {
        body,
        limits,
        count: 0,
        each,
    };
    match format {
        BodyFormat::Json => splitter.split_json()?,
        BodyFormat::Ndjson => splitter.split_ndjson()?,
    }
    if splitter.count == 0 {
        return Err(ApiError::bad_request(
            "no events in body: send an event object, an array of them, or NDJSON",
        ));
    }
    Ok(())
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// serde_json refuses to nest deeper than this (its recursion limit is 128 open brackets).
const PARSER_MAX_DEPTH: usize = 127;

/// Walks a body event by event.
struct Splitter<'a, F> {
    body: &'a [u8],
    limits: &'a Limits,
    /// Events accepted so far; also the index of the next one.
    count: usize,
    each: F,
}

impl<F> Splitter<'_, F>
where
    F: FnMut(usize, Map<String, Value>) -> Result<(), ApiError>,
{
    fn split_json(&mut self) -> Result<(), ApiError> {
        let body = self.body;
        let start = if body.starts_with(BOM) { BOM.len() } else { 0 };
        let mut pos = skip_ws(body, start);
        if pos == body.len() {
            return Err(ApiError::bad_request(
                "empty body: send an event object, an array of them, or NDJSON",
            ));
        }
        if body[pos] != b'[' {
            // One object, or several concatenated.
            while pos < body.len() {
                self.check_count()?;
                let (value, end) = self.parse_value_at(pos)?;
                self.accept(value, end - pos)?;
                pos = skip_ws(body, end);
            }
            return Ok(());
        }
        pos = skip_ws(body, pos + 1);
        if body.get(pos) == Some(&b']') {
            pos = skip_ws(body, pos + 1);
        } else {
            loop {
                self.check_count()?;
                let (value, end) = self.parse_value_at(pos)?;
                self.accept(value, end - pos)?;
                pos = skip_ws(body, end);
                match body.get(pos) {
                    Some(b',') => {
                        pos = skip_ws(body, pos + 1);
                        if body.get(pos) == Some(&b']') {
                            return Err(syntax_error(body, pos, "trailing comma"));
                        }
                    }
                    Some(b']') => {
                        pos = skip_ws(body, pos + 1);
                        break;
                    }
                    Some(_) => return Err(syntax_error(body, pos, "expected `,` or `]`")),
                    None => return Err(syntax_error(body, pos, "EOF while parsing a list")),
                }
            }
        }
        if pos != body.len() {
            return Err(syntax_error(body, pos, "trailing characters"));
        }
        Ok(())
    }

    fn split_ndjson(&mut self) -> Result<(), ApiError> {
        let body = self.body;
        for (line_index, raw) in body.split(|&b| b == b'\n').enumerate() {
            let line_no = line_index + 1;
            let mut line = raw;
            let mut lead = 0;
            if line_index == 0 && line.starts_with(BOM) {
                line = &line[BOM.len()..];
                lead = BOM.len();
            }
            // JSON's whitespace only (space, tab, CR): `trim_ascii` would also take form feeds,
            // accepting lines that are not JSON texts, which a JSON body refuses.
            let start = skip_ws(line, 0);
            let end = line[start..]
                .iter()
                .rposition(|b| !is_json_ws(*b))
                .map_or(start, |i| start + i + 1);
            let trimmed = &line[start..end];
            if trimmed.is_empty() {
                continue;
            }
            lead += start;
            self.check_count()?;
            self.check_size(trimmed.len())?;
            match serde_json::from_slice::<Value>(trimmed) {
                Ok(value) => self.accept(value, trimmed.len())?,
                Err(e) if is_recursion_limit(&e) => return Err(self.too_deep(trimmed)),
                Err(e) => {
                    return Err(ApiError::bad_request(format!(
                        "malformed JSON at line {line_no}, column {}: {}",
                        lead + e.column(),
                        syntax_reason(&e)
                    ))
                    .at(line_no, lead + e.column()));
                }
            }
        }
        Ok(())
    }

    /// Parse the one JSON value starting at `pos` (no leading whitespace); returns it and the
    /// offset just past it.
    fn parse_value_at(&self, pos: usize) -> Result<(Value, usize), ApiError> {
        let rest = &self.body[pos..];
        let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => Ok((value, pos + stream.byte_offset())),
            Some(Err(e)) if is_recursion_limit(&e) => Err(self.too_deep(rest)),
            Some(Err(e)) => {
                let (line, column) = translate(self.body, pos, e.line(), e.column());
                Err(ApiError::bad_request(format!(
                    "malformed JSON at line {line}, column {column}: {}",
                    syntax_reason(&e)
                ))
                .at(line, column))
            }
            None => Err(syntax_error(self.body, pos, "EOF while parsing a value")),
        }
    }

    fn check_count(&self) -> Result<(), ApiError> {
        if self.count >= self.limits.max_events {
            return Err(ApiError::too_large(format!(
                "more than max_events ({}) events in one request",
                self.limits.max_events
            )));
        }
        Ok(())
    }

    fn check_size(&self, size: usize) -> Result<(), ApiError> {
        if size > self.limits.max_event_bytes {
            let index = self.count;
            return Err(ApiError::too_large(format!(
                "event {index} is {size} bytes; max_event_bytes is {}",
                self.limits.max_event_bytes
            ))
            .with_index(index));
        }
        Ok(())
    }

    fn accept(&mut self, value: Value, size: usize) -> Result<(), ApiError> {
        let index = self.count;
        self.check_size(size)?;
        let Value::Object(object) = value else {
            return Err(ApiError::unprocessable(
                index,
                None,
                format!("event {index} is {}, not a JSON object", json_type(&value)),
            ));
        };
        check_depth(index, &object, self.limits.max_depth)?;
        self.count += 1;
        (self.each)(index, object)
    }

    /// serde_json hit its recursion limit inside the event starting `event` bytes: 422 naming
    /// the event and (found by a byte scan, only on this error path) its top-level field.
    fn too_deep(&self, event: &[u8]) -> ApiError {
        let index = self.count;
        let limit = self.limits.max_depth.min(PARSER_MAX_DEPTH);
        let field = field_nesting_past(event, limit);
        depth_error(index, field.as_deref(), self.limits.max_depth)
    }
}

fn depth_error(index: usize, field: Option<&str>, max_depth: usize) -> ApiError {
    let limit = if max_depth <= PARSER_MAX_DEPTH {
        format!("max_depth ({max_depth})")
    } else {
        format!("{PARSER_MAX_DEPTH} levels (the JSON parser's limit)")
    };
    let message = match field {
        Some(f) => format!("event {index}: `{f}` nests deeper than {limit}"),
        None => format!("event {index} nests deeper than {limit}"),
    };
    ApiError::unprocessable(index, field, message)
}

/// 422 if any value in the event nests deeper than `max_depth`, counting the event object as
/// depth 1.
fn check_depth(index: usize, object: &Map<String, Value>, max_depth: usize) -> Result<(), ApiError> {
    let Some(budget) = max_depth.checked_sub(1) else {
        return Err(depth_error(index, None, max_depth));
    };
    for (key, value) in object {
        if nests_past(value, budget) {
            return Err(depth_error(index, Some(&field_name(key)), max_depth));
        }
    }
    Ok(())
}

/// Whether `value` holds more than `budget` levels of arrays/objects (itself included).
fn nests_past(value: &Value, budget: usize) -> bool {
    match value {
        Value::Array(items) => budget == 0 || items.iter().any(|v| nests_past(v, budget - 1)),
        Value::Object(map) => budget == 0 || map.values().any(|v| nests_past(v, budget - 1)),
        _ => false,
    }
}

/// The top-level key of the object in `bytes` whose value first nests past `limit` levels (the
/// object itself is level 1). A plain byte scan: only used after serde_json's recursion limit,
/// where the prefix up to that point is known to be well-formed.
fn field_nesting_past(bytes: &[u8], limit: usize) -> Option<String> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut expect_key = false;
    let mut key_start: Option<usize> = None;
    let mut current_key: Option<&[u8]> = None;
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                if let Some(start) = key_start.take() {
                    current_key = Some(&bytes[start..=i]);
                }
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                if depth == 1 && expect_key {
                    key_start = Some(i);
                    expect_key = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    let key = serde_json::from_slice::<String>(current_key?).ok()?;
                    return Some(field_name(&key));
                }
                if depth == 1 && b == b'{' {
                    expect_key = true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_key = true,
            _ => {}
        }
    }
    None
}

fn is_recursion_limit(e: &serde_json::Error) -> bool {
    // serde_json exposes no error code; its message for this case is fixed.
    e.to_string().starts_with("recursion limit exceeded")
}

/// serde_json's reason for a syntax error, if it is one of its fixed messages (they never
/// quote the input); anything else becomes a generic word.
fn syntax_reason(e: &serde_json::Error) -> &'static str {
    const FIXED: &[&str] = &[
        "EOF while parsing a list",
        "EOF while parsing an object",
        "EOF while parsing a string",
        "EOF while parsing a value",
        "expected `:`",
        "expected `,` or `]`",
        "expected `,` or `}`",
        "expected ident",
        "expected value",
        "expected `\"`",
        "invalid escape",
        "invalid number",
        "number out of range",
        "invalid unicode code point",
        "control character (\\u0000-\\u001F) found while parsing a string",
        "key must be a string",
        "lone leading surrogate in hex escape",
        "trailing comma",
        "trailing characters",
        "unexpected end of hex escape",
    ];
    let text = e.to_string();
    FIXED
        .iter()
        .find(|reason| text.starts_with(*reason))
        .copied()
        .unwrap_or("invalid JSON")
}

/// A syntax error we found ourselves at byte `pos` of the body.
fn syntax_error(body: &[u8], pos: usize, reason: &str) -> ApiError {
    let (line, column) = position(body, pos);
    ApiError::bad_request(format!("malformed JSON at line {line}, column {column}: {reason}")).at(line, column)
}

/// 1-based line and column of byte `pos`.
fn position(body: &[u8], pos: usize) -> (usize, usize) {
    let before = &body[..pos.min(body.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    (line, pos - line_start + 1)
}

/// A (line, column) serde_json reported for the slice starting at `base`, as a position in the
/// whole body.
fn translate(body: &[u8], base: usize, line: usize, column: usize) -> (usize, usize) {
    let (base_line, base_column) = position(body, base);
    if line <= 1 {
        (base_line, base_column - 1 + column)
    } else {
        (base_line + line - 1, column)
    }
}

fn skip_ws(body: &[u8], mut pos: usize) -> usize {
    while body.get(pos).is_some_and(|b| is_json_ws(*b)) {
        pos += 1;
    }
    pos
}

/// Whitespace as JSON (RFC 8259) has it: no form feed or vertical tab.
fn is_json_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// The top-level fields of the canonical event and of SARK's payload: the only key names an
/// error repeats as they are.
const KNOWN_FIELDS: &[&str] = &[
    "event_id",
    "event_type",
    "timestamp",
    "actor",
    "agent_id",
    "server_name",
    "tool_name",
    "decision",
    "outcome",
    "reason",
    "request_id",
    "correlation_id",
    "source_ip",
    "source",
    "metadata",
    "user_id",
    "gateway_request_id",
];

/// How an error names a key from the body. A known field is named as it is; any other key is a
/// name the sender chose and may itself be a secret (`{"sk_live_…": 1}`, an email address), so
/// it is named by a digest instead: `key#` and the first 8 hex digits of the SHA-256 of the
/// name, which a sender can compute for the keys it sent (`printf %s KEY | sha256sum`).
pub(crate) fn field_name(name: &str) -> String {
    if KNOWN_FIELDS.contains(&name) {
        return name.to_owned();
    }
    use sha2::{Digest, Sha256};
    format!("key#{}", hex::encode(&Sha256::digest(name.as_bytes())[..4]))
}

/// "a string", "an object", ... — the type of a value, never the value.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// 422 for `field` of event `index`; `what` completes "`field` ...".
pub(crate) fn invalid(index: usize, field: &str, what: impl std::fmt::Display) -> ApiError {
    ApiError::unprocessable(index, Some(field), format!("event {index}: `{field}` {what}"))
}

pub(crate) fn missing(index: usize, field: &str) -> ApiError {
    invalid(index, field, "is required")
}

/// An optional string field (`null` = absent).
pub(crate) fn optional_string(index: usize, field: &str, value: Value) -> Result<Option<String>, ApiError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        other => Err(invalid(
            index,
            field,
            format_args!("must be a string, not {}", json_type(&other)),
        )),
    }
}

/// A string field that must hold something (`null` = absent, checked by the caller).
pub(crate) fn non_empty_string(index: usize, field: &str, value: Value) -> Result<Option<String>, ApiError> {
    match optional_string(index, field, value)? {
        Some(s) if s.trim().is_empty() => Err(invalid(index, field, "must not be empty")),
        other => Ok(other),
    }
}

/// An optional object field (`null` = empty).
pub(crate) fn optional_object(index: usize, field: &str, value: Value) -> Result<Map<String, Value>, ApiError> {
    match value {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => Ok(map),
        other => Err(invalid(
            index,
            field,
            format_args!("must be an object, not {}", json_type(&other)),
        )),
    }
}

/// How a timestamp may be written, beyond RFC 3339 strings and JSON numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumericStrings {
    /// `"1700000000"` is refused (the canonical schema).
    Refuse,
    /// `"1700000000"` counts as the integer (what pydantic's lax `int` accepts; SARK).
    Accept,
}

/// An optional timestamp field (`null` = absent). See the module docs for the rules.
pub(crate) fn optional_timestamp(
    index: usize,
    field: &str,
    value: &Value,
    numeric_strings: NumericStrings,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let micros = match value {
        Value::Null => return Ok(None),
        Value::Number(n) => unix_number_to_micros(n),
        Value::String(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(to_micros(t.with_timezone(&Utc)).timestamp_micros()),
            Err(_) => match (numeric_strings, s.parse::<i64>()) {
                (NumericStrings::Accept, Ok(i)) => unix_integer_to_micros(i),
                _ => {
                    return Err(invalid(
                        index,
                        field,
                        "must be an RFC 3339 time with an offset (e.g. 2025-01-15T10:30:00Z) \
                         or a number of unix seconds or milliseconds",
                    ));
                }
            },
        },
        other => {
            return Err(invalid(
                index,
                field,
                format_args!(
                    "must be an RFC 3339 string or a number of unix seconds or milliseconds, not {}",
                    json_type(other)
                ),
            ));
        }
    };
    match micros.and_then(DateTime::from_timestamp_micros) {
        Some(t) if (1970..=9999).contains(&t.year()) => Ok(Some(t)),
        _ => Err(invalid(index, field, "is outside the years 1970..=9999 (UTC)")),
    }
}

/// Numbers ≥ 1e11 are unix milliseconds, smaller ones unix seconds.
const MILLIS_THRESHOLD: i64 = 100_000_000_000;

fn unix_integer_to_micros(i: i64) -> Option<i64> {
    if i < 0 {
        None
    } else if i >= MILLIS_THRESHOLD {
        i.checked_mul(1_000)
    } else {
        i.checked_mul(1_000_000)
    }
}

/// Unix seconds/milliseconds → microseconds, truncated. Fractions are read from the number's
/// shortest decimal form, not through float arithmetic, so `1700000000.123456` is exactly
/// `…123456` µs. (serde_json holds non-integers as f64: about 0.24 µs apart at today's epoch
/// seconds, so six fractional digits survive exactly; a seventh may already have been rounded
/// by the JSON parser.)
fn unix_number_to_micros(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return unix_integer_to_micros(i);
    }
    let f = n.as_f64()?;
    if n.is_u64() || f < 0.0 {
        // Beyond i64 seconds, or before 1970 (JSON has no NaN; -0.0 is 1970).
        return None;
    }
    let scale = if f >= MILLIS_THRESHOLD as f64 { 3 } else { 6 };
    scale_decimal(&n.to_string(), scale)
}

/// `digits[.digits][e±exp] × 10^pow`, truncated toward zero; for non-negative numbers as
/// serde_json prints them.
fn scale_decimal(text: &str, pow: i32) -> Option<i64> {
    let text = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: i128 = 0;
    for c in int.bytes().chain(frac.bytes()) {
        if !c.is_ascii_digit() {
            return None;
        }
        digits = digits.checked_mul(10)?.checked_add(i128::from(c - b'0'))?;
    }
    let shift = exp.checked_add(pow)?.checked_sub(i32::try_from(frac.len()).ok()?)?;
    let value = if shift >= 0 {
        digits.checked_mul(10i128.checked_pow(shift.unsigned_abs())?)?
    } else {
        match 10i128.checked_pow(shift.unsigned_abs()) {
            Some(divisor) => digits / divisor,
            None => 0,
        }
    };
    i64::try_from(value).ok()
}

/// The canonical event from event object `index` of a request.
fn canonical_event(index: usize, object: Map<String, Value>, source: &str) -> Result<Event, ApiError> {
    let mut event_id = None;
    let mut event_type = None;
    let mut timestamp = None;
    let mut actor = None;
    let mut agent_id = None;
    let mut server_name = None;
    let mut tool_name = None;
    let mut decision = None;
    let mut outcome = None;
    let mut reason = None;
    let mut request_id = None;
    let mut correlation_id = None;
    let mut source_ip = None;
    let mut metadata = Map::new();

    for (key, value) in object {
        let field = key.as_str();
        match field {
            "event_id" => event_id = optional_event_id(index, value)?,
            "event_type" => event_type = non_empty_string(index, field, value)?,
            "timestamp" => timestamp = optional_timestamp(index, field, &value, NumericStrings::Refuse)?,
            "actor" => actor = optional_actor(index, value)?,
            "agent_id" => agent_id = optional_string(index, field, value)?,
            "server_name" => server_name = optional_string(index, field, value)?,
            "tool_name" => tool_name = optional_string(index, field, value)?,
            "decision" => decision = optional_decision(index, field, value)?,
            "outcome" => outcome = optional_string(index, field, value)?,
            "reason" => reason = optional_string(index, field, value)?,
            "request_id" => request_id = optional_string(index, field, value)?,
            "correlation_id" => correlation_id = optional_string(index, field, value)?,
            "source_ip" => source_ip = optional_string(index, field, value)?,
            "metadata" => metadata = optional_object(index, field, value)?,
            "source" => {
                return Err(invalid(
                    index,
                    field,
                    "is set from the ingest token and cannot be sent; put sender data in `metadata`",
                ));
            }
            _ => {
                return Err(invalid(
                    index,
                    &field_name(field),
                    "is not a field of the canonical event (event_id, event_type, timestamp, actor, agent_id, \
                     server_name, tool_name, decision, outcome, reason, request_id, correlation_id, source_ip, \
                     metadata); put extra data in `metadata`",
                ));
            }
        }
    }

    finish(
        index,
        Event {
            event_id: event_id.unwrap_or_else(Uuid::now_v7),
            event_type: event_type.ok_or_else(|| missing(index, "event_type"))?,
            timestamp: timestamp.ok_or_else(|| missing(index, "timestamp"))?,
            actor,
            agent_id,
            server_name,
            tool_name,
            decision,
            outcome,
            reason,
            request_id,
            correlation_id,
            source_ip,
            source: source.to_owned(),
            metadata,
        },
    )
}

/// The last step of every route's mapping: [normalize](Event::normalize) the event (U+0000 →
/// U+FFFD, `-0.0` → `0.0`, as both stores keep it) and refuse a field longer than its
/// [`FIELD_LIMITS`](crate::event::FIELD_LIMITS) entry with 422 naming the field and the limit.
pub(crate) fn finish(index: usize, mut event: Event) -> Result<Event, ApiError> {
    event.normalize();
    match event.oversized_field() {
        None => Ok(event),
        Some((field, limit)) => Err(invalid(
            index,
            field,
            format_args!("is longer than its limit of {limit} bytes; put long data in `metadata`"),
        )),
    }
}

fn optional_event_id(index: usize, value: Value) -> Result<Option<Uuid>, ApiError> {
    let Some(text) = optional_string(index, "event_id", value)? else {
        return Ok(None);
    };
    match Uuid::parse_str(&text) {
        // The nil/max UUIDs are placeholders, not identities: taking one as the idempotency key
        // would silently merge every event a buggy sender posts into one.
        Ok(id) if id.is_nil() || id.is_max() => Err(invalid(index, "event_id", "must not be the nil or max UUID")),
        Ok(id) => Ok(Some(id)),
        Err(_) => Err(invalid(index, "event_id", "must be a UUID")),
    }
}

/// `allow` or `deny` (`null` = absent).
pub(crate) fn optional_decision(index: usize, field: &str, value: Value) -> Result<Option<Decision>, ApiError> {
    match optional_string(index, field, value)? {
        None => Ok(None),
        Some(s) => Decision::parse(&s)
            .map(Some)
            .ok_or_else(|| invalid(index, field, "must be `allow` or `deny`")),
    }
}

fn optional_actor(index: usize, value: Value) -> Result<Option<Actor>, ApiError> {
    let mut actor = Actor { kind: None, id: None };
    for (key, value) in optional_object(index, "actor", value)? {
        match key.as_str() {
            "type" => actor.kind = optional_string(index, "actor.type", value)?,
            "id" => actor.id = optional_string(index, "actor.id", value)?,
            _ => {
                let field = format!("actor.{}", field_name(&key));
                return Err(invalid(
                    index,
                    &field,
                    "is not a field of `actor` (only `type` and `id`)",
                ));
            }
        }
    }
    Ok((actor.kind.is_some() || actor.id.is_some()).then_some(actor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use serde_json::json;

    fn limits() -> Limits {
        Limits::default()
    }

    fn json(body: &str) -> Result<Vec<Event>, ApiError> {
        parse_events(body.as_bytes(), BodyFormat::Json, &limits(), "test-token")
    }

    fn ndjson(body: &str) -> Result<Vec<Event>, ApiError> {
        parse_events(body.as_bytes(), BodyFormat::Ndjson, &limits(), "test-token")
    }

    const OK: &str = r#"{"event_type":"tool_invoke","timestamp":"2025-01-15T10:30:00Z"}"#;

    fn assert_422(e: &ApiError, index: usize, field: Option<&str>) {
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert_eq!(e.index, Some(index), "{e}");
        assert_eq!(e.field.as_deref(), field, "{e}");
    }

    /// An event body with one field replaced or added.
    fn event_with(field: &str, value: Value) -> String {
        let mut v = json!({"event_type": "x", "timestamp": 1_700_000_000});
        v[field] = value;
        v.to_string()
    }

    fn ts(value: Value) -> Result<DateTime<Utc>, ApiError> {
        json(&event_with("timestamp", value)).map(|events| events[0].timestamp)
    }

    // --- shapes ------------------------------------------------------------------------------

    #[test]
    fn single_object_is_one_event() {
        let events = json(OK).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, "tool_invoke");
        assert_eq!(events[0].timestamp.to_rfc3339(), "2025-01-15T10:30:00+00:00");
    }

    #[test]
    fn array_of_objects_is_those_events_in_order() {
        let body = format!(
            "[{}, {}]",
            event_with("event_type", json!("a")),
            event_with("event_type", json!("b"))
        );
        let types: Vec<_> = json(&body).unwrap().into_iter().map(|e| e.event_type).collect();
        assert_eq!(types, ["a", "b"]);
    }

    #[test]
    fn concatenated_objects_in_a_json_body_are_accepted() {
        let body = format!("{OK}\n{OK}{OK}\n");
        assert_eq!(json(&body).unwrap().len(), 3);
    }

    #[test]
    fn ndjson_is_one_event_per_line_and_blank_lines_are_ignored() {
        let body = format!("{OK}\n\n  \r\n{OK}\r\n");
        assert_eq!(ndjson(&body).unwrap().len(), 2);
    }

    /// Found by fuzz/fuzz_targets/body.rs: NDJSON lines were trimmed of form feeds, which are
    /// not JSON whitespace, so a body a JSON parse refuses was accepted as NDJSON.
    #[test]
    fn ndjson_takes_only_json_whitespace_around_an_event() {
        for body in [format!("{OK}\u{c}\n"), format!("\u{c}{OK}\n"), format!("{OK}\n\u{c}\n")] {
            assert_eq!(ndjson(&body).unwrap_err().status, StatusCode::BAD_REQUEST, "{body:?}");
            assert_eq!(json(&body).unwrap_err().status, StatusCode::BAD_REQUEST, "{body:?}");
        }
        assert_eq!(ndjson(&format!(" \t{OK}\t \r\n")).unwrap().len(), 1);
    }

    #[test]
    fn leading_byte_order_mark_is_skipped() {
        assert_eq!(json(&format!("\u{feff}{OK}")).unwrap().len(), 1);
        assert_eq!(ndjson(&format!("\u{feff}{OK}\n")).unwrap().len(), 1);
    }

    #[test]
    fn empty_body_is_400() {
        for body in ["", "  \n"] {
            assert_eq!(json(body).unwrap_err().status, StatusCode::BAD_REQUEST);
            assert_eq!(ndjson(body).unwrap_err().status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn empty_array_is_400_no_events() {
        let e = json(" [ ] ").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.error.contains("no events"), "{e}");
    }

    // --- syntax errors -----------------------------------------------------------------------

    #[test]
    fn malformed_json_is_400_with_line_and_column() {
        let e = json("{\n  \"event_type\": \"x\",\n  \"timestamp\": ,\n}").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!((e.line, e.column), (Some(3), Some(16)), "{e}");
        assert!(e.error.contains("line 3, column 16"), "{e}");
        assert_eq!(e.index, None);
    }

    #[test]
    fn malformed_array_element_position_is_relative_to_the_whole_body() {
        let body = format!("[\n{OK},\n  {{\"event_type\" \"x\"}}]");
        let e = json(&body).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!((e.line, e.column), (Some(3), Some(17)), "{e}");

        let e = json(&format!("[{OK} {OK}]")).unwrap_err();
        assert_eq!((e.line, e.column), (Some(1), Some(OK.len() + 3)), "{e}");
        assert!(e.error.contains("expected `,` or `]`"), "{e}");
    }

    #[test]
    fn truncated_array_is_400() {
        let e = json(&format!("[{OK},")).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.line, Some(1));
        let e = json(&format!("[{OK}")).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn trailing_comma_and_trailing_characters_are_400() {
        let e = json(&format!("[{OK},]")).unwrap_err();
        assert!(e.error.contains("trailing comma"), "{e}");
        let e = json(&format!("[{OK}] x")).unwrap_err();
        assert!(e.error.contains("trailing characters"), "{e}");
        assert_eq!(e.column, Some(OK.len() + 4));
    }

    #[test]
    fn malformed_ndjson_line_is_400_naming_the_body_line() {
        let body = format!("{OK}\n\n  {{\"event_type\": tru}}\n{OK}\n");
        let e = ndjson(&body).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.line, Some(3), "{e}");
        // `  {"event_type": tru}`: serde_json stops at the `}` after `tru`.
        assert_eq!(e.column, Some(21), "{e}");
    }

    #[test]
    fn two_objects_on_one_ndjson_line_are_400() {
        let e = ndjson(&format!("{OK} {OK}\n")).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn syntax_error_message_does_not_echo_the_body() {
        let e = json(r#"{"event_type": "secret-password-123" "#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(!e.error.contains("secret"), "{e}");
    }

    // --- limits ------------------------------------------------------------------------------

    #[test]
    fn more_than_max_events_is_413() {
        let limits = Limits {
            max_events: 2,
            ..limits()
        };
        let two = format!("[{OK},{OK}]");
        assert_eq!(
            parse_events(two.as_bytes(), BodyFormat::Json, &limits, "t")
                .unwrap()
                .len(),
            2
        );
        for (body, format) in [
            (format!("[{OK},{OK},{OK}]"), BodyFormat::Json),
            (format!("{OK}{OK}{OK}"), BodyFormat::Json),
            (format!("{OK}\n{OK}\n{OK}\n"), BodyFormat::Ndjson),
        ] {
            let e = parse_events(body.as_bytes(), format, &limits, "t").unwrap_err();
            assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE, "{format:?}");
            assert!(e.error.contains("max_events (2)"), "{e}");
        }
    }

    #[test]
    fn event_over_max_event_bytes_is_413_with_its_index() {
        let limits = Limits {
            max_event_bytes: OK.len(),
            ..limits()
        };
        let big = event_with("reason", json!("r".repeat(OK.len())));
        for (body, format) in [
            (format!("[{OK}, {big}]"), BodyFormat::Json),
            (format!("{OK}\n{big}\n"), BodyFormat::Ndjson),
            (format!("{OK} {big}"), BodyFormat::Json),
        ] {
            let e = parse_events(body.as_bytes(), format, &limits, "t").unwrap_err();
            assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE, "{format:?}");
            assert_eq!(e.index, Some(1), "{e}");
            assert!(e.error.contains(&format!("max_event_bytes is {}", OK.len())), "{e}");
        }
        // Exactly at the limit is fine.
        assert!(parse_events(OK.as_bytes(), BodyFormat::Json, &limits, "t").is_ok());
    }

    #[test]
    fn nesting_past_max_depth_is_422_naming_index_and_field() {
        let limits = Limits {
            max_depth: 3,
            ..limits()
        };
        // event (1) → metadata (2) → a (3): fine.
        let ok = event_with("metadata", json!({"a": [1]}));
        assert!(parse_events(ok.as_bytes(), BodyFormat::Json, &limits, "t").is_ok());
        // event (1) → metadata (2) → a (3) → [ (4): too deep.
        let deep = event_with("metadata", json!({"a": [[1]]}));
        for (body, format) in [
            (format!("[{OK},{deep}]"), BodyFormat::Json),
            (format!("{OK}\n{deep}"), BodyFormat::Ndjson),
        ] {
            let e = parse_events(body.as_bytes(), format, &limits, "t").unwrap_err();
            assert_422(&e, 1, Some("metadata"));
            assert!(e.error.contains("max_depth (3)"), "{e}");
        }
    }

    #[test]
    fn nesting_past_the_parsers_own_limit_is_422_naming_index_and_field() {
        let deep = format!("{}1{}", "[".repeat(500), "]".repeat(500));
        let body = format!(r#"{{"event_type":"x","timestamp":1,"metadata":{{"k":{deep}}}}}"#);
        for format in [BodyFormat::Json, BodyFormat::Ndjson] {
            let e = parse_events(format!("{OK}\n{body}").as_bytes(), format, &limits(), "t").unwrap_err();
            assert_422(&e, 1, Some("metadata"));
        }
        let array = format!("[{OK},{body}]");
        let e = parse_events(array.as_bytes(), BodyFormat::Json, &limits(), "t").unwrap_err();
        assert_422(&e, 1, Some("metadata"));
    }

    #[test]
    fn depth_scan_finds_the_field_past_escaped_quotes_and_brackets_in_strings() {
        let body = br#"{"a\"{[":"[[[{","b":[[[1]]]}"#;
        assert_eq!(field_nesting_past(body, 3), Some(field_name("b")));
        assert_eq!(field_nesting_past(body, 4), None);
    }

    // --- validation --------------------------------------------------------------------------

    #[test]
    fn non_object_event_is_422_with_its_index() {
        let e = json(&format!("[{OK}, 42]")).unwrap_err();
        assert_422(&e, 1, None);
        let e = ndjson(&format!("{OK}\n\"x\"\n")).unwrap_err();
        assert_422(&e, 1, None);
    }

    #[test]
    fn missing_event_type_is_422() {
        let e = json(&format!(r#"[{OK}, {{"timestamp": 1700000000}}]"#)).unwrap_err();
        assert_422(&e, 1, Some("event_type"));
    }

    #[test]
    fn empty_or_non_string_event_type_is_422() {
        for v in [json!(""), json!("  "), json!(5), json!(null)] {
            let e = json(&event_with("event_type", v.clone())).unwrap_err();
            assert_422(&e, 0, Some("event_type"));
        }
    }

    #[test]
    fn missing_or_null_timestamp_is_422() {
        let e = json(r#"{"event_type": "x"}"#).unwrap_err();
        assert_422(&e, 0, Some("timestamp"));
        let e = ts(Value::Null).unwrap_err();
        assert_422(&e, 0, Some("timestamp"));
    }

    #[test]
    fn rfc3339_timestamps_are_stored_utc_truncated_to_micros() {
        let t = ts(json!("2025-01-15T12:30:00.123456789+02:00")).unwrap();
        assert_eq!(t.to_rfc3339(), "2025-01-15T10:30:00.123456+00:00");
    }

    #[test]
    fn timestamp_without_offset_is_422() {
        for v in [json!("2025-01-15T10:30:00"), json!("2025-01-15"), json!("yesterday")] {
            let e = ts(v).unwrap_err();
            assert_422(&e, 0, Some("timestamp"));
        }
    }

    #[test]
    fn numeric_timestamps_are_unix_seconds() {
        assert_eq!(ts(json!(1_700_000_000)).unwrap().timestamp(), 1_700_000_000);
        assert_eq!(ts(json!(0)).unwrap().timestamp(), 0);
        let t = ts(json!(1_700_000_000.123_456)).unwrap();
        assert_eq!(t.timestamp_micros(), 1_700_000_000_123_456);
        // Sub-microsecond digits are truncated, not rounded.
        assert_eq!(ts(json!(1.000_000_9)).unwrap().timestamp_micros(), 1_000_000);
    }

    #[test]
    fn numbers_from_1e11_are_unix_milliseconds() {
        assert_eq!(
            ts(json!(1_700_000_000_123_i64)).unwrap().timestamp_micros(),
            1_700_000_000_123_000
        );
        assert_eq!(ts(json!(100_000_000_000_i64)).unwrap().timestamp(), 100_000_000);
        assert_eq!(ts(json!(99_999_999_999_i64)).unwrap().timestamp(), 99_999_999_999);
        let t = ts(json!(1_700_000_000_123.456)).unwrap();
        assert_eq!(t.timestamp_micros(), 1_700_000_000_123_456);
    }

    #[test]
    fn timestamps_outside_1970_to_9999_are_422() {
        for v in [
            json!(-1),
            json!(-0.5),
            json!("1969-12-31T23:59:59Z"),
            json!("9999-12-31T23:59:59-01:00"),
            json!(u64::MAX),
            json!(1e300),
        ] {
            let e = ts(v.clone()).unwrap_err();
            assert_422(&e, 0, Some("timestamp"));
            assert!(e.error.contains("1970..=9999"), "{v}: {e}");
        }
        assert!(ts(json!("9999-12-31T23:59:59Z")).is_ok());
        assert!(ts(json!("1970-01-01T00:00:00Z")).is_ok());
    }

    #[test]
    fn numeric_string_timestamp_is_422_in_the_canonical_schema() {
        let e = ts(json!("1700000000")).unwrap_err();
        assert_422(&e, 0, Some("timestamp"));
    }

    #[test]
    fn non_string_non_number_timestamp_is_422() {
        for v in [json!(true), json!({}), json!([1])] {
            assert_422(&ts(v).unwrap_err(), 0, Some("timestamp"));
        }
    }

    #[test]
    fn scale_decimal_is_exact_and_truncates() {
        assert_eq!(scale_decimal("1700000000.123456", 6), Some(1_700_000_000_123_456));
        assert_eq!(scale_decimal("1.7e9", 6), Some(1_700_000_000_000_000));
        assert_eq!(scale_decimal("1.5e-7", 6), Some(0));
        assert_eq!(scale_decimal("0.0000019", 6), Some(1));
        assert_eq!(scale_decimal("1e400", 6), None);
        assert_eq!(scale_decimal("x", 6), None);
    }

    #[test]
    fn event_id_is_taken_from_the_sender() {
        let id = "0190d9a4-7f1c-7cc2-9a53-6d1f0e4c2b11";
        let events = json(&event_with("event_id", json!(id))).unwrap();
        assert_eq!(events[0].event_id.to_string(), id);
    }

    #[test]
    fn missing_event_id_gets_a_fresh_uuid_v7() {
        let events = json(&format!("[{OK},{OK}]")).unwrap();
        assert_eq!(events[0].event_id.get_version_num(), 7);
        assert_ne!(events[0].event_id, events[1].event_id);
        let events = json(&event_with("event_id", Value::Null)).unwrap();
        assert_eq!(events[0].event_id.get_version_num(), 7);
    }

    #[test]
    fn invalid_event_id_is_422() {
        for v in [
            json!("not-a-uuid"),
            json!(12),
            json!("00000000-0000-0000-0000-000000000000"),
            json!("ffffffff-ffff-ffff-ffff-ffffffffffff"),
        ] {
            let e = json(&event_with("event_id", v.clone())).unwrap_err();
            assert_422(&e, 0, Some("event_id"));
        }
    }

    #[test]
    fn all_optional_fields_map_onto_the_event() {
        let body = json!({
            "event_type": "tool_invoke",
            "timestamp": 1_700_000_000,
            "actor": {"type": "user", "id": "u1"},
            "agent_id": "a1",
            "server_name": "s1",
            "tool_name": "t1",
            "decision": "deny",
            "outcome": "failure",
            "reason": "policy",
            "request_id": "r1",
            "correlation_id": "c1",
            "source_ip": "10.0.0.1",
            "metadata": {"k": [1, {"x": null}]}
        });
        let e = json(&body.to_string()).unwrap().remove(0);
        assert_eq!(
            e.actor,
            Some(Actor {
                kind: Some("user".into()),
                id: Some("u1".into())
            })
        );
        assert_eq!(e.agent_id.as_deref(), Some("a1"));
        assert_eq!(e.server_name.as_deref(), Some("s1"));
        assert_eq!(e.tool_name.as_deref(), Some("t1"));
        assert_eq!(e.decision, Some(Decision::Deny));
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        assert_eq!(e.reason.as_deref(), Some("policy"));
        assert_eq!(e.request_id.as_deref(), Some("r1"));
        assert_eq!(e.correlation_id.as_deref(), Some("c1"));
        assert_eq!(e.source_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(Value::Object(e.metadata), json!({"k": [1, {"x": null}]}));
        assert_eq!(e.source, "test-token");
    }

    #[test]
    fn null_optional_fields_are_absent() {
        let body = json!({
            "event_type": "x", "timestamp": 1, "actor": null, "agent_id": null,
            "decision": null, "metadata": null, "event_id": null
        });
        let e = json(&body.to_string()).unwrap().remove(0);
        assert_eq!(e.actor, None);
        assert_eq!(e.agent_id, None);
        assert_eq!(e.decision, None);
        assert!(e.metadata.is_empty());
    }

    #[test]
    fn non_string_optional_field_is_422_naming_it() {
        for field in [
            "agent_id",
            "server_name",
            "tool_name",
            "outcome",
            "reason",
            "request_id",
            "correlation_id",
            "source_ip",
        ] {
            let e = json(&event_with(field, json!(1))).unwrap_err();
            assert_422(&e, 0, Some(field));
        }
    }

    #[test]
    fn decision_other_than_allow_or_deny_is_422() {
        for v in [json!("maybe"), json!("ALLOW"), json!(true)] {
            let e = json(&event_with("decision", v)).unwrap_err();
            assert_422(&e, 0, Some("decision"));
        }
        let e = json(&event_with("decision", json!("allow"))).unwrap().remove(0);
        assert_eq!(e.decision, Some(Decision::Allow));
    }

    #[test]
    fn actor_rules_name_the_actor_field() {
        let e = json(&event_with("actor", json!("alice"))).unwrap_err();
        assert_422(&e, 0, Some("actor"));
        let e = json(&event_with("actor", json!({"id": 7}))).unwrap_err();
        assert_422(&e, 0, Some("actor.id"));
        let e = json(&event_with("actor", json!({"type": "user", "email": "a@b"}))).unwrap_err();
        assert_422(&e, 0, Some(&format!("actor.{}", field_name("email"))));
        let e = json(&event_with("actor", json!({}))).unwrap().remove(0);
        assert_eq!(e.actor, None);
    }

    #[test]
    fn metadata_must_be_an_object() {
        let e = json(&event_with("metadata", json!([1]))).unwrap_err();
        assert_422(&e, 0, Some("metadata"));
    }

    #[test]
    fn unknown_top_level_field_is_422_pointing_at_metadata() {
        let e = json(&format!(r#"[{OK}, {{"event_type":"x","timestamp":1,"user":"alice"}}]"#)).unwrap_err();
        // sha256("user") = 04f8996d…
        assert_422(&e, 1, Some("key#04f8996d"));
        assert!(e.error.contains("metadata"), "{e}");
        assert!(!e.error.contains("alice"), "{e}");
    }

    #[test]
    fn key_names_chosen_by_the_sender_are_never_echoed() {
        for key in [
            "sk_live_51HkQ2eLx0secretkey0000",
            "alice@example.com",
            &"k".repeat(10_000),
        ] {
            let e = json(&event_with(key, json!("x"))).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
            let field = e.field.clone().unwrap_or_default();
            assert!(field.starts_with("key#") && field.len() == 12, "{field}");
            let text = format!("{e} {field}");
            assert!(!text.contains(&key[..8]), "{text}");
            // Nested under actor, and too deep, alike.
            let e = json(&event_with("actor", json!({ key: "x" }))).unwrap_err();
            assert!(!format!("{e} {:?}", e.field).contains(&key[..8]), "{e}");
        }
        let limits = Limits {
            max_depth: 2,
            ..Limits::default()
        };
        let deep = event_with("sk_live_deep_secret", json!({"a": {"b": 1}}));
        let e = parse_events(deep.as_bytes(), BodyFormat::Json, &limits, "t").unwrap_err();
        assert!(!format!("{e} {:?}", e.field).contains("sk_live"), "{e}");
        assert!(e.field.unwrap().starts_with("key#"));
    }

    #[test]
    fn source_in_the_body_is_refused_and_the_token_name_is_used() {
        let e = json(&event_with("source", json!("spoofed"))).unwrap_err();
        assert_422(&e, 0, Some("source"));
        let events = parse_events(OK.as_bytes(), BodyFormat::Json, &limits(), "sark-gateway").unwrap();
        assert_eq!(events[0].source, "sark-gateway");
    }

    #[test]
    fn validation_error_never_echoes_the_value() {
        let e = json(&event_with("event_id", json!("hunter2-secret"))).unwrap_err();
        assert!(!e.error.contains("hunter2"), "{e}");
        let e = json(&event_with("timestamp", json!("hunter2-secret"))).unwrap_err();
        assert!(!e.error.contains("hunter2"), "{e}");
        let e = json(&event_with("decision", json!("hunter2-secret"))).unwrap_err();
        assert!(!e.error.contains("hunter2"), "{e}");
    }

    #[test]
    fn first_invalid_event_fails_the_whole_request() {
        let body = format!("{OK}\n{}\n{OK}\n", event_with("decision", json!("nope")));
        let e = ndjson(&body).unwrap_err();
        assert_422(&e, 1, Some("decision"));
    }
}
