-- Quarantine records and signed chain checkpoints: the same tables as the PostgreSQL store
-- (migrations/postgres/0001_audit_events.sql), in SQLite's types (times as INTEGER
-- microseconds since the Unix epoch, UTC).

-- Events a pipeline stage failed on under its `quarantine` policy: never the payload. One
-- record per (event, stage).
CREATE TABLE quarantine (
    event_id       TEXT    NOT NULL,
    stage          TEXT    NOT NULL,
    error          TEXT    NOT NULL,
    quarantined_us INTEGER NOT NULL,
    PRIMARY KEY (event_id, stage)
) STRICT;
CREATE INDEX quarantine_quarantined_us ON quarantine (quarantined_us);

-- Signed checkpoints of the hash chain (host/src/store/checkpoint.rs).
CREATE TABLE chain_checkpoints (
    seq        INTEGER PRIMARY KEY,
    head_hash  BLOB    NOT NULL CHECK (length(head_hash) = 32),
    created_us INTEGER NOT NULL,
    key_id     TEXT    NOT NULL,
    signature  BLOB    NOT NULL CHECK (length(signature) = 64)
) STRICT;

CREATE TRIGGER chain_checkpoints_no_update
BEFORE UPDATE ON chain_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'chain_checkpoints is append-only');
END;
