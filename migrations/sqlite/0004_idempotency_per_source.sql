-- Idempotency per authenticated source (hardening finding 6): `event_id` was unique
-- store-wide, so once sender B posted an id, sender A's event with that id was reported as a
-- duplicate and dropped: one token could suppress another sender's events. The key is now
-- (source, event_id): resends from one source stay idempotent, the same id from two sources is
-- two events. (The PostgreSQL twin is migrations/postgres/0003_idempotency_per_source.sql.)
--
-- SQLite cannot drop a column constraint, so audit_events is rebuilt with the same columns
-- (one copy of the table, at upgrade), then its indexes and append-only trigger are made again.
CREATE TABLE audit_events_v4 (
    seq            INTEGER PRIMARY KEY,
    event_id       TEXT    NOT NULL,
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
INSERT INTO audit_events_v4 SELECT * FROM audit_events;
DROP TABLE audit_events;
ALTER TABLE audit_events_v4 RENAME TO audit_events;

CREATE UNIQUE INDEX audit_events_source_event_id ON audit_events (source, event_id);
CREATE INDEX audit_events_event_id ON audit_events (event_id);
CREATE INDEX audit_events_ts ON audit_events (ts_us);
CREATE INDEX audit_events_actor_ts ON audit_events (actor_id, ts_us) WHERE actor_id IS NOT NULL;
CREATE INDEX audit_events_request_id ON audit_events (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX audit_events_correlation_id ON audit_events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX audit_events_decision_ts ON audit_events (decision, ts_us) WHERE decision IS NOT NULL;
CREATE INDEX audit_events_event_type_ts ON audit_events (event_type, ts_us);

CREATE TRIGGER audit_events_no_update
BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

-- Quarantine records are one per (source, event, stage); rows from before the upgrade keep an
-- empty source.
CREATE TABLE quarantine_v4 (
    source         TEXT    NOT NULL DEFAULT '',
    event_id       TEXT    NOT NULL,
    stage          TEXT    NOT NULL,
    error          TEXT    NOT NULL,
    quarantined_us INTEGER NOT NULL,
    PRIMARY KEY (source, event_id, stage)
) STRICT;
INSERT INTO quarantine_v4 (event_id, stage, error, quarantined_us)
    SELECT event_id, stage, error, quarantined_us FROM quarantine;
DROP TABLE quarantine;
ALTER TABLE quarantine_v4 RENAME TO quarantine;
CREATE INDEX quarantine_quarantined_us ON quarantine (quarantined_us);

-- A dead letter is keyed by the event's `seq`, which is unique, rather than its id, which no
-- longer is.
CREATE TABLE dead_letters_v4 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sink        TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    created_us  INTEGER NOT NULL,
    replayed_us INTEGER,
    UNIQUE (sink, seq)
) STRICT;
INSERT INTO dead_letters_v4 SELECT * FROM dead_letters;
DROP TABLE dead_letters;
ALTER TABLE dead_letters_v4 RENAME TO dead_letters;
CREATE INDEX dead_letters_pending ON dead_letters (sink, seq) WHERE replayed_us IS NULL;
