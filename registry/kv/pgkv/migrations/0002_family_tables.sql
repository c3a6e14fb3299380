-- Each key family of the registry (registry/keylayout.go,
-- registry/batchtask, registry/regions) in a table of its own: the key's
-- parts are typed columns and the primary key, so every hot-path lookup
-- (a device by id, by node id platform-wide or per product, by
-- fingerprint, by Alibaba product key and device name) is a unique
-- index. Text parts are in the "C" collation and binary parts have a
-- fixed length, so that a table's primary-key order is the byte order of
-- the keys (scans depend on it). Keys of undeclared families stay in kv.
-- pgkv moves the rows of these families that kv holds (a database
-- written before this migration) into them at start.

-- d/{device_id}: device record.
CREATE TABLE devices (
	device_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (device_id)
);

-- n/{node_id}: device_id (CoAP products: node ids unique platform-wide).
CREATE TABLE node_ids (
	node_id text COLLATE "C" NOT NULL,
	device_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (node_id)
);

-- m/{product_id}/{node_id}: device_id. Unique per product.
CREATE TABLE product_node_ids (
	product_id text COLLATE "C" NOT NULL,
	node_id text COLLATE "C" NOT NULL,
	device_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (product_id, node_id)
);

-- f/{fingerprint}: device_id. Unique: one device per certificate fingerprint.
CREATE TABLE fingerprints (
	fingerprint text COLLATE "C" NOT NULL,
	device_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (fingerprint)
);

-- l/{project}/{seq}: device_id (project listing, newest last).
CREATE TABLE project_devices (
	project_id text COLLATE "C" NOT NULL,
	seq text COLLATE "C" NOT NULL,
	device_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (project_id, seq)
);

-- q/{product_id}/{seq}: device_id (product listing; "has devices").
CREATE TABLE product_devices (
	product_id text COLLATE "C" NOT NULL,
	seq text COLLATE "C" NOT NULL,
	device_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (product_id, seq)
);

-- g/{gateway_id}/{seq}: device_id (sub-devices).
CREATE TABLE gateway_devices (
	gateway_id text COLLATE "C" NOT NULL,
	seq text COLLATE "C" NOT NULL,
	device_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (gateway_id, seq)
);

-- t/{device_id}: last connection-status change (unix ns).
CREATE TABLE status_times (
	device_id text COLLATE "C" NOT NULL,
	changed bytea NOT NULL,
	PRIMARY KEY (device_id)
);

-- x/{deadline}/{device_id}: nil (unconnected-registration expiry, ordered). Ordered by deadline for the sweep.
CREATE TABLE device_expiry (
	deadline bytea CHECK (length(deadline) = 8) NOT NULL,
	device_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (deadline, device_id)
);

-- p/{product_id}: product record.
CREATE TABLE products (
	product_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (product_id)
);

-- k/{project}/{seq}: product_id.
CREATE TABLE project_products (
	project_id text COLLATE "C" NOT NULL,
	seq text COLLATE "C" NOT NULL,
	product_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (project_id, seq)
);

-- c/{project}/{certificate_id}: CA certificate record.
CREATE TABLE ca_certificates (
	project_id text COLLATE "C" NOT NULL,
	certificate_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (project_id, certificate_id)
);

-- #/{project}/{shard}: device count of a project (sharded, see addCount). The shard is '' in the unsharded key of earlier versions.
CREATE TABLE project_device_counts (
	project_id text COLLATE "C" NOT NULL,
	shard text COLLATE "C" NOT NULL,
	count bytea NOT NULL,
	PRIMARY KEY (project_id, shard)
);

-- #p/{product_id}/{shard}: device count of a product (sharded). Sharded, as #.
CREATE TABLE product_device_counts (
	product_id text COLLATE "C" NOT NULL,
	shard text COLLATE "C" NOT NULL,
	count bytea NOT NULL,
	PRIMARY KEY (product_id, shard)
);

-- #g/{gateway_id}/{shard}: sub-device count of a gateway (sharded). Sharded, as #.
CREATE TABLE gateway_device_counts (
	gateway_id text COLLATE "C" NOT NULL,
	shard text COLLATE "C" NOT NULL,
	count bytea NOT NULL,
	PRIMARY KEY (gateway_id, shard)
);

-- #gp/{project}/{shard}: number of the project's groups (sharded). Sharded, as #.
CREATE TABLE group_counts (
	project_id text COLLATE "C" NOT NULL,
	shard text COLLATE "C" NOT NULL,
	count bytea NOT NULL,
	PRIMARY KEY (project_id, shard)
);

-- #gm/{group_id}/{shard}: number of the group's members (sharded). Sharded, as #.
CREATE TABLE group_member_counts (
	group_id text COLLATE "C" NOT NULL,
	shard text COLLATE "C" NOT NULL,
	count bytea NOT NULL,
	PRIMARY KEY (group_id, shard)
);

-- a/{command_id}: asynchronous command record.
CREATE TABLE async_commands (
	command_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (command_id)
);

-- al/{device_id}/{seq}: command_id (a device's commands, oldest first).
CREATE TABLE device_commands (
	device_id text COLLATE "C" NOT NULL,
	seq text COLLATE "C" NOT NULL,
	command_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (device_id, seq)
);

-- ap/{device_id}/{seq}: command_id (its PENDING commands, oldest first).
CREATE TABLE pending_commands (
	device_id text COLLATE "C" NOT NULL,
	seq text COLLATE "C" NOT NULL,
	command_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (device_id, seq)
);

-- ax/{deadline}/{command_id}: nil (command expiry/timeout deadlines, ordered). Ordered by deadline.
CREATE TABLE command_deadlines (
	deadline bytea CHECK (length(deadline) = 8) NOT NULL,
	command_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (deadline, command_id)
);

-- #a/{device_id}: number of commands the device keeps.
CREATE TABLE command_meta (
	device_id text COLLATE "C" NOT NULL,
	meta bytea NOT NULL,
	PRIMARY KEY (device_id)
);

-- u/{device_id}/{seq}: uplink message.
CREATE TABLE messages (
	device_id text COLLATE "C" NOT NULL,
	seq text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (device_id, seq)
);

-- #u/{device_id}: number of kept messages and the oldest's seq.
CREATE TABLE message_meta (
	device_id text COLLATE "C" NOT NULL,
	meta bytea NOT NULL,
	PRIMARY KEY (device_id)
);

-- s/{device_id}: device shadow (reported and desired properties, shadow.go).
CREATE TABLE shadows (
	device_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (device_id)
);

-- sd/{device_id}: nil (the device has desired properties: the hint's entry, shadowsync.go).
CREATE TABLE desired_hints (
	device_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (device_id)
);

-- tg/{project}/{key}/{value}/{seq}: device_id (device tags, tags.go).
CREATE TABLE device_tags (
	project_id text COLLATE "C" NOT NULL,
	tag_key text COLLATE "C" NOT NULL,
	tag_value text COLLATE "C" NOT NULL,
	seq text COLLATE "C" NOT NULL,
	device_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (project_id, tag_key, tag_value, seq)
);

-- dm/{device_id}/{message_id}: downlink message record (downlinks.go).
CREATE TABLE downlinks (
	device_id text COLLATE "C" NOT NULL,
	message_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (device_id, message_id)
);

-- dl/{device_id}/{seq}: message_id (a device's downlink messages).
CREATE TABLE device_downlinks (
	device_id text COLLATE "C" NOT NULL,
	seq text COLLATE "C" NOT NULL,
	message_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (device_id, seq)
);

-- dh/{device_id}/{seq}: message_id (its PENDING ones, oldest first).
CREATE TABLE pending_downlinks (
	device_id text COLLATE "C" NOT NULL,
	seq text COLLATE "C" NOT NULL,
	message_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (device_id, seq)
);

-- dx/{deadline}/{device_id}/{message_id}: nil (PENDING message deadlines, ordered). Ordered by deadline.
CREATE TABLE downlink_deadlines (
	deadline bytea CHECK (length(deadline) = 8) NOT NULL,
	device_id text COLLATE "C" NOT NULL,
	message_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (deadline, device_id, message_id)
);

-- #dm/{device_id}: oldest seq of its dl and dh lists (downlinkmeta.go).
CREATE TABLE downlink_meta (
	device_id text COLLATE "C" NOT NULL,
	meta bytea NOT NULL,
	PRIMARY KEY (device_id)
);

-- e/{position}: legacy stream entry (no longer written; the sweep deletes it). Position 8 bytes big-endian.
CREATE TABLE legacy_event_stream (
	position bytea CHECK (length(position) = 8) NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (position)
);

-- ep/{project}/{position}: event record: seq, time, JSON (a project's events, in commit order). Position 8 bytes big-endian.
CREATE TABLE events (
	project_id text COLLATE "C" NOT NULL,
	position bytea CHECK (length(position) = 8) NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (project_id, position)
);

-- es/{device_id}: the device's last event seq.
CREATE TABLE event_seqs (
	device_id text COLLATE "C" NOT NULL,
	seq bytea NOT NULL,
	PRIMARY KEY (device_id)
);

-- eh/{project}: highest position trimmed from the project's events.
CREATE TABLE event_horizons (
	project_id text COLLATE "C" NOT NULL,
	position bytea NOT NULL,
	PRIMARY KEY (project_id)
);

-- ec/{project}/{name}: event consumer (its acknowledged cursor).
CREATE TABLE event_consumers (
	project_id text COLLATE "C" NOT NULL,
	name text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (project_id, name)
);

-- #e: the last event position handed out (cluster event positions, eventstream.go). One row at most (the key has no parts).
CREATE TABLE event_position (
	position bytea NOT NULL
);

-- L/{name}: lease record (singleton work, see Lease).
CREATE TABLE leases (
	name text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (name)
);

-- K/master: the sealed master-key check (masterkey.go).
CREATE TABLE master_key_checks (
	name text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (name)
);

-- nd/{node}: a cluster node's heartbeat (nodes.go).
CREATE TABLE node_beats (
	node text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (node)
);

-- ps/{device_id}: the device's session: node, epoch, since (cluster presence, presencestore.go).
CREATE TABLE presence (
	device_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (device_id)
);

-- bn/{kind}/{value}: a ban of the shared ban list: kind i (identity) or a (address prefix), the ban as JSON with its expiry (bans.go).
CREATE TABLE bans (
	kind text COLLATE "C" NOT NULL,
	value text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (kind, value)
);

-- rs/{device_id}: a protocol adapter's session record: node, expiry, handle, opaque data (sessionrecords.go).
CREATE TABLE session_records (
	device_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (device_id)
);

-- rh/{handle}: device_id (session record by the adapter's handle, e.g. the LwM2M registration id).
CREATE TABLE session_handles (
	handle text COLLATE "C" NOT NULL,
	device_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (handle)
);

-- rr/{project}/{rule_id}: routing rule (routingrules.go).
CREATE TABLE routing_rules (
	project_id text COLLATE "C" NOT NULL,
	rule_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (project_id, rule_id)
);

-- ra/{project}/{action_id}: rule action, its secrets sealed (ruleactions.go).
CREATE TABLE rule_actions (
	project_id text COLLATE "C" NOT NULL,
	action_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (project_id, action_id)
);

-- rf/{project}/{policy_id}: forwarding flow-control policy (flowcontrol.go).
CREATE TABLE flow_policies (
	project_id text COLLATE "C" NOT NULL,
	policy_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (project_id, policy_id)
);

-- rk/{project}/{policy_id}: event backlog policy (backlogpolicy.go).
CREATE TABLE backlog_policies (
	project_id text COLLATE "C" NOT NULL,
	policy_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (project_id, policy_id)
);

-- gp/{project}/{group_id}: device group record (groups.go).
CREATE TABLE device_groups (
	project_id text COLLATE "C" NOT NULL,
	group_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (project_id, group_id)
);

-- gn/{project}/{name}: group_id (group names are unique in a project).
CREATE TABLE group_names (
	project_id text COLLATE "C" NOT NULL,
	name text COLLATE "C" NOT NULL,
	group_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (project_id, name)
);

-- gs/{super_group_id}/{group_id}: nil (a group's sub-groups).
CREATE TABLE sub_groups (
	super_group_id text COLLATE "C" NOT NULL,
	group_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (super_group_id, group_id)
);

-- gm/{group_id}/{seq}: device_id (a group's members, newest last).
CREATE TABLE group_members (
	group_id text COLLATE "C" NOT NULL,
	seq text COLLATE "C" NOT NULL,
	device_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (group_id, seq)
);

-- gd/{device_id}/{group_id}: seq of its gm entry (a device's groups).
CREATE TABLE device_group_links (
	device_id text COLLATE "C" NOT NULL,
	group_id text COLLATE "C" NOT NULL,
	seq text COLLATE "C" NOT NULL,
	PRIMARY KEY (device_id, group_id)
);

-- op/{project}/{package_id}: OTA package record (otapackages.go).
CREATE TABLE ota_packages (
	project_id text COLLATE "C" NOT NULL,
	package_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (project_id, package_id)
);

-- ov/{product}/{type}/{version}: package_id (a package version is unique per product and type).
CREATE TABLE ota_versions (
	product_id text COLLATE "C" NOT NULL,
	package_type text COLLATE "C" NOT NULL,
	version text COLLATE "C" NOT NULL,
	package_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (product_id, package_type, version)
);

-- oc/{package_id}/{chunk}: a piece of the package's file, chunk 8 bytes big-endian.
CREATE TABLE ota_chunks (
	package_id text COLLATE "C" NOT NULL,
	chunk bytea CHECK (length(chunk) = 8) NOT NULL,
	content bytea NOT NULL,
	PRIMARY KEY (package_id, chunk)
);

-- fu/{project}/{upgrade_id}: firmware upgrade job record (firmwareupgrades.go).
CREATE TABLE firmware_upgrades (
	project_id text COLLATE "C" NOT NULL,
	upgrade_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (project_id, upgrade_id)
);

-- fd/{upgrade_id}/{device_id}: the job's item for one device: status, step, result.
CREATE TABLE firmware_items (
	upgrade_id text COLLATE "C" NOT NULL,
	device_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (upgrade_id, device_id)
);

-- fs/{group}: download slots of a batch task (group t:{task_id}) or of a job started without one (u:{upgrade_id}): each holder device's expiry (firmwareslots.go).
CREATE TABLE firmware_slots (
	slot_group text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (slot_group)
);

-- bt/{task_id}: task record (JSON).
CREATE TABLE batch_tasks (
	task_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (task_id)
);

-- btl/{project}/{task_id}: nil (a project's tasks; ids sort by creation).
CREATE TABLE project_batch_tasks (
	project_id text COLLATE "C" NOT NULL,
	task_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (project_id, task_id)
);

-- bta/{task_id}: nil (tasks the runner has work on).
CREATE TABLE active_batch_tasks (
	task_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (task_id)
);

-- bti/{task_id}/{index}: item record (index 4 bytes big-endian).
CREATE TABLE batch_task_items (
	task_id text COLLATE "C" NOT NULL,
	item_index bytea CHECK (length(item_index) = 4) NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (task_id, item_index)
);

-- btt/{task_id}/{target}: index of the target's first item.
CREATE TABLE batch_task_targets (
	task_id text COLLATE "C" NOT NULL,
	target text COLLATE "C" NOT NULL,
	item_index bytea NOT NULL,
	PRIMARY KEY (task_id, target)
);

-- btc/{task_id}/{slot}: item counts by status, as changed by one writer.
CREATE TABLE batch_task_counts (
	task_id text COLLATE "C" NOT NULL,
	slot text COLLATE "C" NOT NULL,
	counts bytea NOT NULL,
	PRIMARY KEY (task_id, slot)
);

-- btf/{project}/{file_id}: uploaded file record (JSON).
CREATE TABLE batch_task_files (
	project_id text COLLATE "C" NOT NULL,
	file_id text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (project_id, file_id)
);

-- btd/{file_id}: uploaded file content.
CREATE TABLE batch_task_file_contents (
	file_id text COLLATE "C" NOT NULL,
	content bytea NOT NULL,
	PRIMARY KEY (file_id)
);

-- act/d/{pk}\x00{dn}: the activation centre's entry of an Alibaba product key and device name (one per device: the primary key).
CREATE TABLE activation_entries (
	product_key text COLLATE "C" NOT NULL,
	device_name text COLLATE "C" NOT NULL,
	entry bytea NOT NULL,
	PRIMARY KEY (product_key, device_name)
);

-- act/i/{id}: {pk}\x00{dn}: the entry by device id.
CREATE TABLE activation_device_ids (
	device_id text COLLATE "C" NOT NULL,
	pair bytea NOT NULL,
	PRIMARY KEY (device_id)
);

-- act/m/{pk}\x00{dn}: empty: a move between regions under way.
CREATE TABLE activation_moves (
	product_key text COLLATE "C" NOT NULL,
	device_name text COLLATE "C" NOT NULL,
	PRIMARY KEY (product_key, device_name)
);
