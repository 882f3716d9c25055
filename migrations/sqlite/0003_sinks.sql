-- What the SIEM sinks keep in the store (host/src/sink/, host/src/store/sink_state.rs): the
-- same tables as migrations/postgres/0002_sinks.sql, in SQLite's types (times as INTEGER
-- microseconds since the Unix epoch, UTC).

-- One row per sink: the highest `seq` the sink has finished with (delivered, or parked in
-- dead_letters). The store is the outbox: a sink reads the events after its cursor, and the
-- cursor only moves forward, only after the destination accepted the batch.
CREATE TABLE sink_cursors (
    sink       TEXT    PRIMARY KEY,
    seq        INTEGER NOT NULL CHECK (seq >= 0),
    updated_us INTEGER NOT NULL
) STRICT;

-- Events a destination refused for their content (HEC 400 code 6, a 400 narrowed down to one
-- event, a 413 for a single event, or a formatter error). No payload: the event is still in
-- audit_events under `seq`, and `auditflow dlq replay` re-reads and re-formats it from there.
-- `reason` is a short code (`hec_code_6`, `http_400`, `too_large`, `format_error`), `detail`
-- says more without event contents. One row per (sink, event); `replayed_us` is set once a
-- replay delivered it.
CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sink        TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    created_us  INTEGER NOT NULL,
    replayed_us INTEGER,
    UNIQUE (sink, event_id)
) STRICT;
CREATE INDEX dead_letters_pending ON dead_letters (sink, seq) WHERE replayed_us IS NULL;
