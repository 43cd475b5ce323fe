-- On a Citus cluster a batch's signals are written at the nodes holding their shards and
-- prepared there (PREPARE TRANSACTION), then the coordinator's transaction that tracks the
-- batch decides it by recording it here, and the parts are committed (store/citus/parts.rs).
-- After a crash between the two commits the maintenance commits the parts of a batch recorded
-- committed and rolls back the others, recording them so (committed = false) first, so that a
-- coordinator's transaction still running cannot record them after. Rows are deleted once no
-- part of theirs is prepared anywhere. Unused on one PostgreSQL.
CREATE TABLE citus_prepared_batches (
    batch_id   uuid PRIMARY KEY,
    committed  boolean NOT NULL,
    decided_at timestamptz NOT NULL DEFAULT now()
);
