-- The audit event table of the embedded SQLite store.
--
-- One column per canonical field (see host/src/event.rs), plus what the store assigns:
-- `seq` (store-wide, gapless, commit order; the rowid, so appends go to the end of the b-tree),
-- `received_us` (when the writer committed the batch) and the hash chain link
-- (`prev_hash`, `hash`; see host/src/store/chain.rs).
--
-- Times are INTEGER microseconds since the Unix epoch, UTC: exact, sortable, and the same
-- precision PostgreSQL keeps. STRICT makes SQLite refuse values of the wrong type instead of
-- silently storing them.
CREATE TABLE audit_events (
    seq            INTEGER PRIMARY KEY,
    event_id       TEXT    NOT NULL UNIQUE,
    event_type     TEXT    NOT NULL,
    ts_us          INTEGER NOT NULL,
    actor_type     TEXT,
    actor_id       TEXT,
    agent_id       TEXT,
    server_name    TEXT,
    tool_name      TEXT,
    decision       TEXT    CHECK (decision IN ('allow', 'deny')),
    outcome        TEXT,
    reason         TEXT,
    request_id     TEXT,
    correlation_id TEXT,
    source_ip      TEXT,
    source         TEXT    NOT NULL,
    metadata       TEXT    NOT NULL DEFAULT '{}',
    received_us    INTEGER NOT NULL,
    prev_hash      BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash           BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;

-- Query paths (`auditflow query`, the API): a time window, optionally narrowed by actor,
-- decision or event type; a request or correlation id alone. Ids are often absent, so those
-- indexes are partial and cost nothing for events without them.
CREATE INDEX audit_events_ts ON audit_events (ts_us);
CREATE INDEX audit_events_actor_ts ON audit_events (actor_id, ts_us) WHERE actor_id IS NOT NULL;
CREATE INDEX audit_events_request_id ON audit_events (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX audit_events_correlation_id ON audit_events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX audit_events_decision_ts ON audit_events (decision, ts_us) WHERE decision IS NOT NULL;
CREATE INDEX audit_events_event_type_ts ON audit_events (event_type, ts_us);

-- An audit trail is append-only: a stored row never changes (the hash chain would expose it
-- anyway; this refuses it up front). Deletion stays possible for retention, which removes
-- whole old ranges and is checked by `auditflow verify` against the chain.
CREATE TRIGGER audit_events_no_update
BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
