-- The registry's ordered key space: every record, index entry, deadline
-- queue and counter is a row, and every key family is a range of the
-- primary key's B-tree (bytea compares byte by byte, as the registry's
-- keys need).
CREATE TABLE kv (
	key   bytea PRIMARY KEY,
	value bytea NOT NULL
);

-- One row per group-commit transaction that wrote, inserted by that
-- transaction: when the connection is lost while COMMIT is in flight, the
-- committer learns the outcome by inserting the same id itself (it waits
-- for the transaction if that is still running; finding the row means it
-- committed). Rows are deleted by the next transaction.
CREATE TABLE kv_commits (
	id bytea PRIMARY KEY,
	at timestamptz NOT NULL DEFAULT now()
);
