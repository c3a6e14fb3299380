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
//	dm/{device_id}/{message_id}   downlink message record (downlinks.go)
//	dl/{device_id}/{seq}          message_id (a device's downlink messages)
//	dh/{device_id}/{seq}          message_id (its PENDING ones, oldest first)
//	dx/{deadline}/{device_id}/{message_id} nil (PENDING message deadlines, ordered)
//	#dm/{device_id}               oldest seq of its dl and dh lists (downlinkmeta.go)
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

func downlinkKey(dev, id string) []byte      { return key("dm", dev, id) }
func downlinkListKey(dev, seq string) []byte { return key("dl", dev, seq) }
func downlinkHeldKey(dev, seq string) []byte { return key("dh", dev, seq) }
func downlinkMetaKey(dev string) []byte      { return key("#dm", dev) }

var downlinkDeadlinePrefix = []byte{'d', 'x', sep}

// downlinkDeadlineKey orders PENDING messages by their deadline
// (big-endian unix nanoseconds), so the sweep stops at the first not due.
func downlinkDeadlineKey(at time.Time, dev, id string) []byte {
	b := make([]byte, 0, len(downlinkDeadlinePrefix)+9+len(dev)+1+len(id))
	b = append(b, downlinkDeadlinePrefix...)
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixNano()))
	b = append(b, sep)
	b = append(b, dev...)
	b = append(b, sep)
	return append(b, id...)
}

func parseDownlinkDeadlineKey(k []byte) (at time.Time, dev, id string, ok bool) {
	n := len(downlinkDeadlinePrefix)
	if len(k) < n+9 {
		return time.Time{}, "", "", false
	}
	at = time.Unix(0, int64(binary.BigEndian.Uint64(k[n:])))
	dev, id, ok = strings.Cut(string(k[n+9:]), string(rune(sep)))
	return at, dev, id, ok
}
