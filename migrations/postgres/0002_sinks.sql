-- What the SIEM sinks keep in the store (host/src/sink/, host/src/store/sink_state.rs); the
-- SQLite twin is migrations/sqlite/0003_sinks.sql.
--
-- Which replica drives a sink is not a table: it is a session-level advisory lock held on a
-- dedicated connection (host/src/store/postgres/sinks.rs), released by PostgreSQL the moment
-- that connection closes, also when the process is killed.

-- One row per sink: the highest `seq` the sink has finished with (delivered, or parked in
-- dead_letters). Only ever moves forward (GREATEST), only after the destination accepted.
CREATE TABLE sink_cursors (
    sink       text        PRIMARY KEY,
    seq        bigint      NOT NULL CHECK (seq >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Events a destination refused for their content. No payload: the event is still in
-- audit_events under `seq`, and `auditflow dlq replay` re-reads and re-formats it from there.
-- `reason` is a short code (`hec_code_6`, `http_400`, `too_large`, `format_error`), `detail`
-- says more without event contents.
CREATE TABLE dead_letters (
    id          bigserial   PRIMARY KEY,
    sink        text        NOT NULL,
    event_id    uuid        NOT NULL,
    seq         bigint      NOT NULL,
    reason      text        NOT NULL,
    detail      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz,
    UNIQUE (sink, event_id)
);
CREATE INDEX dead_letters_pending ON dead_letters (sink, seq) WHERE replayed_at IS NULL;
