-- eo/{device_id}/{seq}: a cluster's event waiting for the relay
-- (registry/eventrelay.go): the project id, a 0 byte, then the event
-- record as events stores it. Seq 8 bytes big-endian: a device's entries
-- are in seq order, which the relay relies on.
CREATE TABLE event_outbox (
	device_id text COLLATE "C" NOT NULL,
	seq bytea CHECK (length(seq) = 8) NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (device_id, seq)
);
