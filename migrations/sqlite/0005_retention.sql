-- Retention records (host/src/store/retention.rs; the PostgreSQL twin is
-- migrations/postgres/0004_retention.sql): one per `auditflow retention apply` that removed
-- events, signed with the chain's checkpoint key, written in the same transaction.
CREATE TABLE retention_records (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    cutoff_us  INTEGER NOT NULL,
    head_seq   INTEGER NOT NULL,
    head_hash  BLOB    NOT NULL,
    created_us INTEGER NOT NULL,
    removed    INTEGER NOT NULL,
    runs       BLOB    NOT NULL,
    key_id     TEXT    NOT NULL,
    signature  BLOB    NOT NULL
) STRICT;

CREATE TRIGGER retention_records_no_update
BEFORE UPDATE ON retention_records
BEGIN
    SELECT RAISE(ABORT, 'retention_records is append-only');
END;
