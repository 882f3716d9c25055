-- Retention records (host/src/store/retention.rs): each `auditflow retention apply` that
-- removes events writes one, signed with the chain's checkpoint key, in the same transaction:
-- the cut-off, the chain head at the cut, and the removed rows as runs of consecutive seqs with
-- the hash of each run's last row (48 bytes a run). `auditflow verify` accepts a gap in seq only
-- where a record with a valid signature covers it exactly.
CREATE TABLE retention_records (
    id         bigserial   PRIMARY KEY,
    cutoff     timestamptz NOT NULL,
    head_seq   bigint      NOT NULL,
    head_hash  bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    removed    bigint      NOT NULL,
    runs       bytea       NOT NULL,
    key_id     text        NOT NULL,
    signature  bytea       NOT NULL
);

CREATE TRIGGER retention_records_no_update BEFORE UPDATE ON retention_records
    FOR EACH ROW EXECUTE FUNCTION auditflow_refuse_update('retention_records');
