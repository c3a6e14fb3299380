package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// Key layout: every key family the registry stores, and nowhere else.
// Ids are [A-Za-z0-9_-], so a 0 byte separates parts safely. Every index
// entry is written in the same transaction as its record.
//
//	d/{device_id}                  device record
//	n/{node_id}                    device_id (CoAP products: platform-wide node ids)
//	m/{product_id}/{node_id}       device_id
//	f/{fingerprint}                device_id
//	l/{project}/{seq}              device_id (project listing, newest last)
//	q/{product_id}/{seq}           device_id (product listing; "has devices")
//	g/{gateway_id}/{seq}           device_id (sub-devices)
//	x/{deadline}/{device_id}       nil (unconnected-registration expiry, ordered)
//	t/{device_id}                  last connection-status change (unix ns)
//	p/{product_id}                 product record
//	k/{project}/{seq}              product_id
//	c/{project}/{certificate_id}   CA certificate record
//	#/{project}/{shard}            device count of a project (sharded, see addCount)
//	#p/{product_id}/{shard}        device count of a product (sharded)
//	#g/{gateway_id}/{shard}        sub-device count of a gateway (sharded)
//	a/{command_id}                 asynchronous command record
//	al/{device_id}/{seq}           command_id (a device's commands, oldest first)
//	ap/{device_id}/{seq}           command_id (its PENDING commands, oldest first)
//	ax/{deadline}/{command_id}     nil (command expiry/timeout deadlines, ordered)
//	#a/{device_id}                 number of commands the device keeps
//	u/{device_id}/{seq}            uplink message
//	#u/{device_id}                 number of kept messages and the oldest's seq
//	s/{device_id}                  device shadow (reported and desired properties, shadow.go)
//	sd/{device_id}                 nil (the device has desired properties: the hint's entry, shadowsync.go)
//	tg/{project}/{key}/{value}/{seq} device_id (device tags, tags.go)
//	dm/{device_id}/{message_id}    downlink message record (downlinks.go)
//	dl/{device_id}/{seq}           message_id (a device's downlink messages)
//	dh/{device_id}/{seq}           message_id (its PENDING ones, oldest first)
//	dx/{deadline}/{device_id}/{message_id} nil (PENDING message deadlines, ordered)
//	#dm/{device_id}                oldest seq of its dl and dh lists (downlinkmeta.go)
//	e/{position}                   legacy stream entry (no longer written; the sweep deletes it)
//	ep/{project}/{position}        event record: seq, time, JSON (a project's events, in commit order)
//	es/{device_id}                 the device's last event seq
//	eo/{device_id}/{seq}           an event still to be relayed into its project's stream (a cluster's outbox, eventrelay.go): project, 0, the record as ep/ stores it; seq 8 bytes big-endian
//	eh/{project}                   highest position trimmed from the project's events
//	ec/{project}/{name}            event consumer (its acknowledged cursor)
//	L/{name}                       lease record (singleton work, see Lease)
//	K/master                       the sealed master-key check (masterkey.go)
//	nd/{node}                      a cluster node's heartbeat (nodes.go)
//	ps/{device_id}                 the device's session: node, epoch, since (cluster presence, presencestore.go)
//	#e                             the last event position handed out (cluster event positions, eventstream.go)
//	rr/{project}/{rule_id}         routing rule (routingrules.go)
//	ra/{project}/{action_id}       rule action, its secrets sealed (ruleactions.go)
//	rf/{project}/{policy_id}       forwarding flow-control policy (flowcontrol.go)
//	bn/{kind}/{value}              a ban of the shared ban list: kind i (identity) or a (address prefix), the ban as JSON with its expiry (bans.go)
//	rs/{device_id}                 a protocol adapter's session record: node, expiry, handle, opaque data (sessionrecords.go)
//	rh/{handle}                    device_id (session record by the adapter's handle, e.g. the LwM2M registration id)
//	gp/{project}/{group_id}        device group record (groups.go)
//	gn/{project}/{name}            group_id (group names are unique in a project)
//	gs/{super_group_id}/{group_id} nil (a group's sub-groups)
//	gm/{group_id}/{seq}            device_id (a group's members, newest last)
//	gd/{device_id}/{group_id}      seq of its gm entry (a device's groups)
//	#gp/{project}/{shard}          number of the project's groups (sharded)
//	#gm/{group_id}/{shard}         number of the group's members (sharded)
//	bt, btl, bta, bti, btt, btc, btf, btd  batch tasks, their items, counts and files (registry/batchtask/keys.go)
//	op/{project}/{package_id}      OTA package record (otapackages.go)
//	ov/{product}/{type}/{version}  package_id (a package version is unique per product and type)
//	oc/{package_id}/{chunk}        a piece of the package's file, chunk 8 bytes big-endian
//	fu/{project}/{upgrade_id}      firmware upgrade job record (firmwareupgrades.go)
//	fd/{upgrade_id}/{device_id}    the job's item for one device: status, step, result
//	fs/{group}                     download slots of a batch task (group t:{task_id}) or of a job started without one (u:{upgrade_id}): each holder device's expiry (firmwareslots.go)
//
// Positions are 8 bytes big-endian, so the ordered keys are the stream.
const sep = 0

// The families.
const (
	famDevice        = "d"
	famNode          = "n"
	famProductNode   = "m"
	famFingerprint   = "f"
	famProjectDevice = "l"
	famProductDevice = "q"
	famGatewayDevice = "g"
	famStatusTime    = "t"
	famProduct       = "p"
	famProjectProd   = "k"
	famCert          = "c"
	famProjectCount  = "#"
	famProductCount  = "#p"
	famGatewayCount  = "#g"
	famAsync         = "a"
	famAsyncDevice   = "al"
	famAsyncPending  = "ap"
	famAsyncCount    = "#a"
	famMessage       = "u"
	famMessageCount  = "#u"
	famShadow        = "s"
	famDesired       = "sd"
	famTag           = "tg"
	famDownlink      = "dm"
	famDownlinkList  = "dl"
	famDownlinkHeld  = "dh"
	famDownlinkMeta  = "#dm"
	famEventStream   = "e" // legacy: no longer written
	famEvent         = "ep"
	famEventSeq      = "es"
	famEventOutbox   = "eo"
	famEventHorizon  = "eh"
	famEventConsumer = "ec"
	famLease         = "L"
	famKeyCheck      = "K"
	famNodeBeat      = "nd"
	famPresence      = "ps"
	famEventPosition = "#e"
	famBan           = "bn"
	famRoutingRule   = "rr"
	famRuleAction    = "ra"
	famFlowPolicy    = "rf"
	famBacklogPolicy = "rk"
	famSessionRecord = "rs"
	famSessionHandle = "rh"
	famGroup         = "gp"
	famGroupName     = "gn"
	famSubGroup      = "gs"
	famGroupMember   = "gm"
	famDeviceGroup   = "gd"
	famGroupCount    = "#gp"
	famMemberCount   = "#gm"
	famOTAPackage    = "op"
	famOTAVersion    = "ov"
	famOTAChunk      = "oc"
	famFwUpgrade     = "fu"
	famFwItem        = "fd"
	famFwSlots       = "fs"
)

func key(prefix string, parts ...string) []byte {
	n := len(prefix) + 1
	for _, p := range parts {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, prefix...)
	for _, p := range parts {
		b = append(b, sep)
		b = append(b, p...)
	}
	return b
}

// cutPart splits the first part off a key made by key: for the whole key
// that is its prefix, the family ("d" for device records, "ap" for
// pending commands...). ok is false if there is no separator.
func cutPart(k string) (first, rest string, ok bool) {
	return strings.Cut(k, string(rune(sep)))
}

// prefixKey is key(...) plus a trailing separator, for scanning children.
func prefixKey(prefix string, parts ...string) []byte {
	return append(key(prefix, parts...), sep)
}

func deviceKey(id string) []byte                   { return key(famDevice, id) }
func nodeKey(node string) []byte                   { return key(famNode, node) }
func productNodeKey(product, node string) []byte   { return key(famProductNode, product, node) }
func fingerprintKey(fp string) []byte              { return key(famFingerprint, fp) }
func projectDeviceKey(project, seq string) []byte  { return key(famProjectDevice, project, seq) }
func projectDevicesPrefix(project string) []byte   { return prefixKey(famProjectDevice, project) }
func productDeviceKey(product, seq string) []byte  { return key(famProductDevice, product, seq) }
func productDevicesPrefix(product string) []byte   { return prefixKey(famProductDevice, product) }
func gatewayDeviceKey(gw, seq string) []byte       { return key(famGatewayDevice, gw, seq) }
func gatewayDevicesPrefix(gw string) []byte        { return prefixKey(famGatewayDevice, gw) }
func productKey(id string) []byte                  { return key(famProduct, id) }
func projectProductKey(project, seq string) []byte { return key(famProjectProd, project, seq) }
func projectProductsPrefix(project string) []byte  { return prefixKey(famProjectProd, project) }
func certKey(project, id string) []byte            { return key(famCert, project, id) }
func certsPrefix(project string) []byte            { return prefixKey(famCert, project) }
func projectCountKey(project string) []byte        { return key(famProjectCount, project) }
func productCountKey(product string) []byte        { return key(famProductCount, product) }
func gatewayCountKey(gw string) []byte             { return key(famGatewayCount, gw) }
func asyncKey(id string) []byte                    { return key(famAsync, id) }
func asyncDeviceKey(dev, seq string) []byte        { return key(famAsyncDevice, dev, seq) }
func asyncDevicePrefix(dev string) []byte          { return prefixKey(famAsyncDevice, dev) }
func asyncPendingKey(dev, seq string) []byte       { return key(famAsyncPending, dev, seq) }
func asyncPendingPrefix(dev string) []byte         { return prefixKey(famAsyncPending, dev) }
func asyncCountKey(dev string) []byte              { return key(famAsyncCount, dev) }
func messageKey(dev, seq string) []byte            { return key(famMessage, dev, seq) }
func messagesPrefix(dev string) []byte             { return prefixKey(famMessage, dev) }
func messageCountKey(dev string) []byte            { return key(famMessageCount, dev) }
func shadowKey(dev string) []byte                  { return key(famShadow, dev) }
func desiredKey(dev string) []byte                 { return key(famDesired, dev) }
func downlinkKey(dev, id string) []byte            { return key(famDownlink, dev, id) }
func downlinkListKey(dev, seq string) []byte       { return key(famDownlinkList, dev, seq) }
func downlinkHeldKey(dev, seq string) []byte       { return key(famDownlinkHeld, dev, seq) }
func downlinkMetaKey(dev string) []byte            { return key(famDownlinkMeta, dev) }
func leaseKey(name string) []byte                  { return key(famLease, name) }
func keyCheckKey() []byte                          { return key(famKeyCheck, "master") }
func nodeBeatKey(node string) []byte               { return key(famNodeBeat, node) }
func nodeBeatsPrefix() []byte                      { return prefixKey(famNodeBeat) }
func presenceKey(dev string) []byte                { return key(famPresence, dev) }
func bansPrefix() []byte                           { return prefixKey(famBan) }
func routingRuleKey(project, id string) []byte     { return key(famRoutingRule, project, id) }
func ruleActionKey(project, id string) []byte      { return key(famRuleAction, project, id) }
func flowPolicyKey(project, id string) []byte      { return key(famFlowPolicy, project, id) }
func backlogPolicyKey(project, id string) []byte   { return key(famBacklogPolicy, project, id) }
func sessionRecordKey(dev string) []byte           { return key(famSessionRecord, dev) }
func sessionHandleKey(h string) []byte             { return key(famSessionHandle, h) }
func groupKey(project, id string) []byte           { return key(famGroup, project, id) }
func groupNameKey(project, name string) []byte     { return key(famGroupName, project, name) }
func subGroupKey(super, id string) []byte          { return key(famSubGroup, super, id) }
func groupMemberKey(group, seq string) []byte      { return key(famGroupMember, group, seq) }
func deviceGroupKey(dev, group string) []byte      { return key(famDeviceGroup, dev, group) }
func groupCountKey(project string) []byte          { return key(famGroupCount, project) }
func memberCountKey(group string) []byte           { return key(famMemberCount, group) }

// statusTimeKey holds a device's last status change apart from its
// record, so connects and disconnects never rewrite (and re-seal, and
// evict from the cache) the record itself.
func statusTimeKey(id string) []byte { return key(famStatusTime, id) }

// The ordered deadline indexes (see Queues).
var (
	expiryPrefix           = []byte{'x', sep}
	asyncDeadlinePrefix    = []byte{'a', 'x', sep}
	downlinkDeadlinePrefix = []byte{'d', 'x', sep}
)

// deadlineKey orders deadlines by big-endian unix nanoseconds so a sweep
// reads the due ones first and stops at the first that is not due.
func deadlineKey(prefix []byte, at time.Time, id string) []byte {
	b := make([]byte, 0, len(prefix)+8+1+len(id))
	b = append(b, prefix...)
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixNano()))
	b = append(b, sep)
	return append(b, id...)
}

func parseDeadlineKey(prefix, k []byte) (time.Time, string, bool) {
	n := len(prefix)
	if len(k) < n+9 || string(k[:n]) != string(prefix) {
		return time.Time{}, "", false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(k[n:]))), string(k[n+9:]), true
}

func expiryKey(at time.Time, id string) []byte          { return deadlineKey(expiryPrefix, at, id) }
func parseExpiryKey(k []byte) (time.Time, string, bool) { return parseDeadlineKey(expiryPrefix, k) }
func asyncDeadlineKey(at time.Time, id string) []byte {
	return deadlineKey(asyncDeadlinePrefix, at, id)
}
func parseAsyncDeadlineKey(k []byte) (time.Time, string, bool) {
	return parseDeadlineKey(asyncDeadlinePrefix, k)
}

// downlinkDeadlineKey orders PENDING messages by their deadline, so the
// sweep stops at the first not due.
func downlinkDeadlineKey(at time.Time, dev, id string) []byte {
	return deadlineKey(downlinkDeadlinePrefix, at, dev+string(rune(sep))+id)
}

func parseDownlinkDeadlineKey(k []byte) (at time.Time, dev, id string, ok bool) {
	at, ref, ok := parseDeadlineKey(downlinkDeadlinePrefix, k)
	if !ok {
		return time.Time{}, "", "", false
	}
	dev, id, ok = strings.Cut(ref, string(rune(sep)))
	return at, dev, id, ok
}

// counterShards is how many keys one shared counter is spread over: every
// create and delete rewrites the counters of its project, product (and
// gateway), and on an engine shared by several nodes one key each would
// make them all contend for it. Each node writes its own shard (chosen by
// its name), so one node's writes never conflict with another's unless
// their names share a shard, and a node's batch of creates (group commit)
// rewrites one key per counter, not one per device; a read sums them.
const counterShards = 16

// shardDigits names the shards.
const shardDigits = "0123456789abcdef"

// counterShardOf is the shard a node writes its counts to.
func counterShardOf(node string) byte {
	return shardDigits[nodeHash(node)%counterShards]
}

// counterShard names the shard of k that counts w's node's writes.
func counterShard(w Writer, k []byte) []byte {
	shard := shardDigits[0]
	if t, ok := w.(*tracked); ok {
		shard = t.r.countShard
	}
	return append(append(k[:len(k):len(k)], sep), shard)
}

// addCount adds delta to the counter k, in the writing node's shard. A
// shard may go below zero (a device counted by another node, or in the
// unsharded key of earlier versions, left); the sum is the count.
func addCount(w Writer, k []byte, delta int64) error {
	sk := counterShard(w, k)
	var n int64
	v, err := w.Get(sk)
	switch {
	case err == nil:
		n, err = strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return fmt.Errorf("corrupt counter %q: %w", sk, err)
		}
	case !errors.Is(err, kv.ErrNotFound):
		return err
	}
	n += delta
	if n == 0 {
		return w.Delete(sk)
	}
	return w.Set(sk, strconv.AppendInt(nil, n, 10))
}

// deleteCount deletes the counter k: its shards and its unsharded key.
func deleteCount(w Writer, k []byte) error {
	if err := w.Delete(k); err != nil {
		return err
	}
	for i := range counterShards {
		// A fresh key each time: an engine may keep the slice it is given.
		if err := w.Delete(append(append(k[:len(k):len(k)], sep), shardDigits[i])); err != nil {
			return err
		}
	}
	return nil
}

// readCount sums the counter k's shards and its unsharded key (written
// by versions before sharding). It reads them one by one rather than
// scanning their prefix: inside a write transaction a scan makes the
// engine merge every write of the transaction's batch, a point read does
// not.
func readCount(rd Reader, k []byte) (int64, error) {
	var total int64
	read := func(key []byte) error {
		v, err := rd.Get(key)
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return fmt.Errorf("corrupt counter %q: %w", key, err)
		}
		total += n
		return nil
	}
	if err := read(k); err != nil {
		return 0, err
	}
	shard := append(append(k[:len(k):len(k)], sep), 0)
	for i := range counterShards {
		shard[len(shard)-1] = shardDigits[i]
		if err := read(shard); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// eventStreamPrefix is where versions before per-project trimming kept a
// stream entry for every event (position → time and project); the sweep
// deletes what a store still holds of them (trimLegacyStream).
var eventStreamPrefix = []byte{famEventStream[0], sep}

// eventStreamKey is a legacy stream entry of the event at pos.
func eventStreamKey(pos uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), eventStreamPrefix...), pos)
}

// eventProjectsAfter is where the scan for the project after project
// starts in the event family: past every key of project's events.
func eventProjectsAfter(project string) []byte {
	k := prefixKey(famEvent, project)
	k[len(k)-1] = sep + 1
	return k
}

// eventKey is the record of a project's event at pos.
func eventKey(project string, pos uint64) []byte {
	return binary.BigEndian.AppendUint64(prefixKey(famEvent, project), pos)
}

func eventSeqKey(dev string) []byte { return key(famEventSeq, dev) }

// eventOutboxKey is a device's event seq in the cluster's outbox: a
// device's entries are in seq order, and the family in device order.
func eventOutboxKey(dev string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(prefixKey(famEventOutbox, dev), seq)
}

// eventOutboxPrefix is the whole outbox: eventOutboxDevicePrefix one
// device's entries.
var eventOutboxPrefix = []byte{famEventOutbox[0], famEventOutbox[1], sep}

func eventOutboxDevicePrefix(dev string) []byte { return prefixKey(famEventOutbox, dev) }

// eventPositionKey holds the last event position handed out, on a cluster.
var eventPositionKey = []byte(famEventPosition)

func eventHorizonKey(project string) []byte        { return key(famEventHorizon, project) }
func eventConsumerKey(project, name string) []byte { return key(famEventConsumer, project, name) }
