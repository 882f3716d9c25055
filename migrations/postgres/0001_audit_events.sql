-- The PostgreSQL schema of auditflow (see docs/STORE.md for the reasoning).
--
-- audit_events: one column per canonical field (host/src/event.rs), in the same order as the
-- SQLite table, plus what the store assigns: `seq` (store-wide, gapless, commit order),
-- `received_at` (when the writer committed the batch) and the hash-chain link
-- (`prev_hash`, `hash`; host/src/store/chain.rs). Times are timestamptz (stored as UTC
-- microseconds, the precision auditflow keeps), metadata is jsonb.
--
-- Range-partitioned by month on the event time, for retention (drop a month) and for
-- time-bounded queries. Monthly partitions are created ahead of time by the store itself
-- (host/src/store/postgres/partitions.rs) at start-up and every hour; this migration only
-- creates the DEFAULT partition, which catches events whose month has no partition (far past
-- or far future), so an insert never fails for lack of a partition.
CREATE TABLE audit_events (
    seq            bigint      NOT NULL,
    event_id       uuid        NOT NULL,
    event_type     text        NOT NULL,
    "timestamp"    timestamptz NOT NULL,
    actor_type     text,
    actor_id       text,
    agent_id       text,
    server_name    text,
    tool_name      text,
    decision       text        CHECK (decision IN ('allow', 'deny')),
    outcome        text,
    reason         text,
    request_id     text,
    correlation_id text,
    source_ip      text,
    source         text        NOT NULL,
    metadata       jsonb       NOT NULL DEFAULT '{}',
    received_at    timestamptz NOT NULL,
    prev_hash      bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash           bytea       NOT NULL CHECK (octet_length(hash) = 32),
    -- A unique constraint on a partitioned table must contain the partition key, so this
    -- cannot be `seq` alone; `event_ids.seq` below is the store-wide uniqueness of `seq`.
    PRIMARY KEY (seq, "timestamp")
) PARTITION BY RANGE ("timestamp");

CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;

-- Query paths (`auditflow query`, the API, operators' SQL): a time window, optionally narrowed
-- by actor, decision or event type; a request or correlation id alone. Ids are often absent,
-- so those indexes are partial. Defined on the parent, so every partition gets them.
CREATE INDEX audit_events_ts ON audit_events ("timestamp");
CREATE INDEX audit_events_actor_ts ON audit_events (actor_id, "timestamp") WHERE actor_id IS NOT NULL;
CREATE INDEX audit_events_request_id ON audit_events (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX audit_events_correlation_id ON audit_events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX audit_events_decision_ts ON audit_events (decision, "timestamp") WHERE decision IS NOT NULL;
CREATE INDEX audit_events_event_type_ts ON audit_events (event_type, "timestamp");

-- The idempotency key, store-wide. Unpartitioned, because a unique index on audit_events
-- would have to include the event time: a resend with a different timestamp would then not be
-- a duplicate, and a lookup would probe every partition. The writer checks the batch's ids
-- here and inserts the new ones in the same transaction as the events, under its advisory
-- lock; the primary key is the backstop that makes a double insert fail instead of storing
-- twice. `seq` UNIQUE is what makes seq unique across partitions.
CREATE TABLE event_ids (
    event_id uuid   PRIMARY KEY,
    seq      bigint NOT NULL UNIQUE
);

-- Events a pipeline stage failed on under its `quarantine` policy: who, where and why, never
-- the payload (it may hold the secrets the stage was meant to remove). One record per
-- (event, stage): a resend that fails again is not recorded twice.
CREATE TABLE quarantine (
    event_id       uuid        NOT NULL,
    stage          text        NOT NULL,
    error          text        NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, stage)
);
CREATE INDEX quarantine_quarantined_at ON quarantine (quarantined_at);

-- Signed checkpoints of the hash chain (host/src/store/checkpoint.rs): the head `seq` and
-- its hash at `created_at`, signed with the Ed25519 key `key_id`.
CREATE TABLE chain_checkpoints (
    seq        bigint      PRIMARY KEY,
    head_hash  bytea       NOT NULL CHECK (octet_length(head_hash) = 32),
    created_at timestamptz NOT NULL,
    key_id     text        NOT NULL,
    signature  bytea       NOT NULL CHECK (octet_length(signature) = 64)
);

-- An audit trail is append-only: a stored event or checkpoint never changes (the chain would
-- expose it anyway; this refuses it up front, so a mistake is an error rather than a finding
-- of `auditflow verify`). Deletion stays possible: retention drops whole months.
CREATE FUNCTION auditflow_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_ARGV[0];
END
$$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION auditflow_refuse_update('audit_events');
CREATE TRIGGER chain_checkpoints_no_update BEFORE UPDATE ON chain_checkpoints
    FOR EACH ROW EXECUTE FUNCTION auditflow_refuse_update('chain_checkpoints');
