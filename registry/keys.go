package registry

import (
	"encoding/binary"
	"strings"
	"time"
)

// Key layout. Ids are [A-Za-z0-9_-], so a 0 byte separates parts safely.
// Every index entry is written in the same transaction as its record.
//
//	d/{device_id}                 device record
//	n/{node_id}                   device_id (CoAP products: platform-wide node ids)
//	m/{product_id}/{node_id}      device_id
//	f/{fingerprint}               device_id
//	l/{project}/{seq}             device_id (project listing, newest last)
//	q/{product_id}/{seq}          device_id (product listing; "has devices")
//	g/{gateway_id}/{seq}          device_id (sub-devices)
//	x/{deadline}/{device_id}      nil (unconnected-registration expiry, ordered)
//	p/{product_id}                product record
//	k/{project}/{seq}             product_id
//	c/{project}/{certificate_id}  CA certificate record
//	#/{project}                   device count of a project
//	#p/{product_id}               device count of a product
//	#g/{gateway_id}               sub-device count of a gateway
//	t/{device_id}                 last connection-status change (unix ns)
//	e/{position}                  event time (unix ns) and project (the stream, in commit order)
//	ep/{project}/{position}       event record (a project's events, in commit order)
//	es/{device_id}                the device's last event seq
//	eh/{project}                  highest position trimmed from the project's events
//	ec/{project}/{name}           event consumer (its acknowledged cursor)
//
// Positions are 8 bytes big-endian, so the ordered keys are the stream.
const sep = 0

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

func deviceKey(id string) []byte                   { return key("d", id) }
func nodeKey(node string) []byte                   { return key("n", node) }
func productNodeKey(product, node string) []byte   { return key("m", product, node) }
func fingerprintKey(fp string) []byte              { return key("f", fp) }
func projectDeviceKey(project, seq string) []byte  { return key("l", project, seq) }
func productDeviceKey(product, seq string) []byte  { return key("q", product, seq) }
func gatewayDeviceKey(gw, seq string) []byte       { return key("g", gw, seq) }
func productKey(id string) []byte                  { return key("p", id) }
func projectProductKey(project, seq string) []byte { return key("k", project, seq) }
func certKey(project, id string) []byte            { return key("c", project, id) }
func projectCountKey(project string) []byte        { return key("#", project) }
func productCountKey(product string) []byte        { return key("#p", product) }
func gatewayCountKey(gw string) []byte             { return key("#g", gw) }

var expiryPrefix = []byte{'x', sep}

// expiryKey orders deadlines by big-endian unix nanoseconds so a sweep
// reads the due ones first and stops at the first that is not due.
func expiryKey(at time.Time, id string) []byte {
	b := make([]byte, 0, len(expiryPrefix)+8+1+len(id))
	b = append(b, expiryPrefix...)
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixNano()))
	b = append(b, sep)
	return append(b, id...)
}

func parseExpiryKey(k []byte) (time.Time, string, bool) {
	if len(k) < len(expiryPrefix)+9 {
		return time.Time{}, "", false
	}
	ns := binary.BigEndian.Uint64(k[len(expiryPrefix):])
	return time.Unix(0, int64(ns)), string(k[len(expiryPrefix)+9:]), true
}

// statusTimeKey holds a device's last status change apart from its
// record, so connects and disconnects never rewrite (and re-seal, and
// evict from the cache) the record itself.
func statusTimeKey(id string) []byte { return key("t", id) }

var eventStreamPrefix = []byte{'e', sep}

// eventStreamKey is the stream entry of the event at pos.
func eventStreamKey(pos uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), eventStreamPrefix...), pos)
}

// eventKey is the record of a project's event at pos.
func eventKey(project string, pos uint64) []byte {
	return binary.BigEndian.AppendUint64(prefixKey("ep", project), pos)
}

func eventSeqKey(dev string) []byte                { return key("es", dev) }
func eventHorizonKey(project string) []byte        { return key("eh", project) }
func eventConsumerKey(project, name string) []byte { return key("ec", project, name) }
