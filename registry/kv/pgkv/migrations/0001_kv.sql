-- The registry's ordered key space: every record, index entry, deadline
-- queue and counter is a row, and every key family is a range of the
-- primary key's B-tree (bytea compares byte by byte, as the registry's
-- keys need).
CREATE TABLE kv (
	key   bytea PRIMARY KEY,
	value bytea NOT NULL
);
