-- Idempotency per authenticated source (hardening finding 6): `event_id` was unique
-- store-wide, so once sender B posted an id, sender A's event with that id was reported as a
-- duplicate and dropped: one token could suppress another sender's events. The key is now
-- (source, event_id): resends from one source stay idempotent, the same id from two sources is
-- two events.
--
-- event_ids learns each row's source from audit_events (one pass over the table, at upgrade).
ALTER TABLE event_ids ADD COLUMN source text;
UPDATE event_ids SET source = e.source FROM audit_events e WHERE e.seq = event_ids.seq;
ALTER TABLE event_ids ALTER COLUMN source SET NOT NULL;
ALTER TABLE event_ids DROP CONSTRAINT event_ids_pkey;
ALTER TABLE event_ids ADD PRIMARY KEY (source, event_id);
CREATE INDEX event_ids_event_id ON event_ids (event_id);

-- Quarantine records are one per (source, event, stage); rows from before the upgrade keep an
-- empty source.
ALTER TABLE quarantine ADD COLUMN source text NOT NULL DEFAULT '';
ALTER TABLE quarantine DROP CONSTRAINT quarantine_pkey;
ALTER TABLE quarantine ADD PRIMARY KEY (source, event_id, stage);

-- A dead letter is keyed by the event's `seq`, which is unique, rather than its id, which
-- no longer is.
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_sink_event_id_key;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_sink_seq_key UNIQUE (sink, seq);
