package registry

import "github.com/iotgate/iotgate/registry/kv"

// StoreLayout describes the registry's key families (keys.go) for
// engines that keep each in a table of its own (pgkv): the table, the
// parts' columns and types, the value's. keylayout_test.go fails when a
// family of keys.go is missing here or a key the registry builds does
// not fit its declaration. Tables named here are created by pgkv's
// migrations.
func StoreLayout() []kv.Family {
	t, b, opt := kv.TextCol, kv.BinaryCol, kv.OptionalText
	rec, ref := kv.BytesValue, kv.TextValue
	none := kv.Column{}
	fam := func(name, table string, value kv.Column, parts ...kv.Column) kv.Family {
		return kv.Family{Name: name, Table: table, Parts: parts, Value: value}
	}
	return []kv.Family{
		// Devices and their hot-path indexes (unique by their keys).
		fam(famDevice, "devices", rec("record"), t("device_id")),
		fam(famNode, "node_ids", ref("device_id"), t("node_id")),
		fam(famProductNode, "product_node_ids", ref("device_id"), t("product_id"), t("node_id")),
		fam(famFingerprint, "fingerprints", ref("device_id"), t("fingerprint")),
		fam(famProjectDevice, "project_devices", ref("device_id"), t("project_id"), t("seq")),
		fam(famProductDevice, "product_devices", ref("device_id"), t("product_id"), t("seq")),
		fam(famGatewayDevice, "gateway_devices", ref("device_id"), t("gateway_id"), t("seq")),
		fam(famStatusTime, "status_times", rec("changed"), t("device_id")),
		fam("x", "device_expiry", none, b("deadline", 8), t("device_id")),
		// Products and certificates.
		fam(famProduct, "products", rec("record"), t("product_id")),
		fam(famProjectProd, "project_products", ref("product_id"), t("project_id"), t("seq")),
		fam(famCert, "ca_certificates", rec("record"), t("project_id"), t("certificate_id")),
		// Sharded counters: the shard is absent in keys of earlier versions.
		fam(famProjectCount, "project_device_counts", rec("count"), t("project_id"), opt("shard")),
		fam(famProductCount, "product_device_counts", rec("count"), t("product_id"), opt("shard")),
		fam(famGatewayCount, "gateway_device_counts", rec("count"), t("gateway_id"), opt("shard")),
		fam(famGroupCount, "group_counts", rec("count"), t("project_id"), opt("shard")),
		fam(famMemberCount, "group_member_counts", rec("count"), t("group_id"), opt("shard")),
		// Asynchronous commands.
		fam(famAsync, "async_commands", rec("record"), t("command_id")),
		fam(famAsyncDevice, "device_commands", ref("command_id"), t("device_id"), t("seq")),
		fam(famAsyncPending, "pending_commands", ref("command_id"), t("device_id"), t("seq")),
		fam("ax", "command_deadlines", none, b("deadline", 8), t("command_id")),
		fam(famAsyncCount, "command_meta", rec("meta"), t("device_id")),
		// Uplink messages, shadows, tags.
		fam(famMessage, "messages", rec("record"), t("device_id"), t("seq")),
		fam(famMessageCount, "message_meta", rec("meta"), t("device_id")),
		fam(famShadow, "shadows", rec("record"), t("device_id")),
		fam(famDesired, "desired_hints", none, t("device_id")),
		fam(famTag, "device_tags", ref("device_id"), t("project_id"), t("tag_key"), t("tag_value"), t("seq")),
		// Downlink messages.
		fam(famDownlink, "downlinks", rec("record"), t("device_id"), t("message_id")),
		fam(famDownlinkList, "device_downlinks", ref("message_id"), t("device_id"), t("seq")),
		fam(famDownlinkHeld, "pending_downlinks", ref("message_id"), t("device_id"), t("seq")),
		fam("dx", "downlink_deadlines", none, b("deadline", 8), t("device_id"), t("message_id")),
		fam(famDownlinkMeta, "downlink_meta", rec("meta"), t("device_id")),
		// Events.
		fam(famEventStream, "legacy_event_stream", rec("record"), b("position", 8)),
		fam(famEvent, "events", rec("record"), t("project_id"), b("position", 8)),
		fam(famEventSeq, "event_seqs", rec("seq"), t("device_id")),
		fam(famEventHorizon, "event_horizons", rec("position"), t("project_id")),
		fam(famEventConsumer, "event_consumers", rec("record"), t("project_id"), t("name")),
		fam(famEventPosition, "event_position", rec("position")),
		fam(famEventOutbox, "event_outbox", rec("record"), t("device_id"), b("seq", 8)),
		// Cluster and platform state.
		fam(famLease, "leases", rec("record"), t("name")),
		fam(famKeyCheck, "master_key_checks", rec("record"), t("name")),
		fam(famNodeBeat, "node_beats", rec("record"), t("node")),
		fam(famPresence, "presence", rec("record"), t("device_id")),
		fam(famBan, "bans", rec("record"), t("kind"), t("value")),
		fam(famSessionRecord, "session_records", rec("record"), t("device_id")),
		fam(famSessionHandle, "session_handles", ref("device_id"), t("handle")),
		// Rules and forwarding.
		fam(famRoutingRule, "routing_rules", rec("record"), t("project_id"), t("rule_id")),
		fam(famRuleAction, "rule_actions", rec("record"), t("project_id"), t("action_id")),
		fam(famFlowPolicy, "flow_policies", rec("record"), t("project_id"), t("policy_id")),
		fam(famBacklogPolicy, "backlog_policies", rec("record"), t("project_id"), t("policy_id")),
		// Device groups.
		fam(famGroup, "device_groups", rec("record"), t("project_id"), t("group_id")),
		fam(famGroupName, "group_names", ref("group_id"), t("project_id"), t("name")),
		fam(famSubGroup, "sub_groups", none, t("super_group_id"), t("group_id")),
		fam(famGroupMember, "group_members", ref("device_id"), t("group_id"), t("seq")),
		fam(famDeviceGroup, "device_group_links", ref("seq"), t("device_id"), t("group_id")),
		// OTA packages and firmware upgrades.
		fam(famOTAPackage, "ota_packages", rec("record"), t("project_id"), t("package_id")),
		fam(famOTAVersion, "ota_versions", ref("package_id"), t("product_id"), t("package_type"), t("version")),
		fam(famOTAChunk, "ota_chunks", rec("content"), t("package_id"), b("chunk", 8)),
		fam(famFwUpgrade, "firmware_upgrades", rec("record"), t("project_id"), t("upgrade_id")),
		fam(famFwItem, "firmware_items", rec("record"), t("upgrade_id"), t("device_id")),
		fam(famFwSlots, "firmware_slots", rec("record"), t("slot_group")),
	}
}
