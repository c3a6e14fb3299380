package registry

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// A device record is stored in binary rather than as JSON: every create
// writes one and every cache miss on the hot path reads one, and its JSON
// (field names, the secret in base64, the id twice) made it the largest
// record a create writes (BENCHMARKS.md run 28). Records written as JSON
// by earlier versions still read: JSON starts with '{', this form with
// deviceRecordV1.
//
// Layout: the version, the flags (a uvarint), then the fields in the
// order of appendDeviceRecord, each string a uvarint length and its
// bytes. The device id is the record's key and is not repeated; the node
// id is left out when the id is IoTDA's default, product_node; the
// listing seq is its 12 bytes when it is our own 24 hex digits.

const deviceRecordV1 = 1

const (
	devNodeInID = 1 << iota // DeviceID is ProductID + "_" + NodeID
	devSeqRaw               // Seq is 24 lowercase hex digits, stored as 12 bytes
	devFrozen
	devSecure
	devTimeoutSet
	devClientIDKept
	devCreated
	devActive
	devExpire
	devStatusTime
)

// appendDeviceRecord appends the binary record of d with secret,
// secondary and d.ClientIDs[i].Sealed standing for its secrets and client
// id tokens: sealed for the store, plain for the cache (deviceBlob).
// packSeq stores a seq of 24 hex digits as its 12 bytes: the store's
// form is smaller, the cache's reads back without an allocation.
func appendDeviceRecord[S string | []byte](b []byte, d *Device, secret, secondary S, packSeq bool) []byte {
	var flags uint64
	node, ok := nodeOfDefaultID(d.DeviceID, d.ProductID)
	nodeInID := ok && node == d.NodeID
	seq, seqRaw := packHexID(d.Seq)
	seqRaw = seqRaw && packSeq
	for _, f := range []struct {
		on   bool
		flag uint64
	}{
		{nodeInID, devNodeInID}, {seqRaw, devSeqRaw}, {d.Frozen, devFrozen}, {d.Auth.SecureAccess, devSecure},
		{d.Auth.TimeoutSet, devTimeoutSet}, {d.ClientIDKept, devClientIDKept}, {!d.CreateTime.IsZero(), devCreated},
		{!d.ActiveTime.IsZero(), devActive}, {!d.ExpireAt.IsZero(), devExpire}, {!d.StatusTime.IsZero(), devStatusTime},
	} {
		if f.on {
			flags |= f.flag
		}
	}
	b = append(b, deviceRecordV1)
	b = binary.AppendUvarint(b, flags)
	b = appendBin(b, d.ProjectID)
	if !nodeInID {
		b = appendBin(b, d.NodeID)
	}
	for _, s := range []string{d.ProductID, d.GatewayID, d.DeviceName, d.Description} {
		b = appendBin(b, s)
	}
	b = appendBin(b, []byte(d.ExtensionInfo))
	for _, s := range []string{string(d.Auth.Type), d.Auth.Fingerprint, d.Auth.SecondaryFingerprint} {
		b = appendBin(b, s)
	}
	b = binary.AppendVarint(b, d.Auth.Timeout)
	for _, t := range deviceTimes(d) {
		if flags&t.flag != 0 {
			b = appendBinTime(b, *t.at)
		}
	}
	if seqRaw {
		b = append(b, seq[:]...)
	} else {
		b = appendBin(b, d.Seq)
	}
	b = appendBin(b, d.DynReg)
	b = binary.AppendUvarint(b, uint64(len(d.ClientIDs)))
	for _, c := range d.ClientIDs {
		b = appendBin(b, c.ClientID)
		b = appendBin(b, c.Sealed)
		b = appendBinTime(b, c.CreateTime)
	}
	b = binary.AppendUvarint(b, uint64(len(d.Tags)))
	for _, t := range d.Tags {
		b = appendBin(b, t.Key)
		b = appendBin(b, t.Value)
	}
	b = appendBin(b, secret)
	return appendBin(b, secondary)
}

// deviceTimes are a device's optional times and their flags, in their
// stored order.
func deviceTimes(d *Device) [4]struct {
	flag uint64
	at   *time.Time
} {
	return [4]struct {
		flag uint64
		at   *time.Time
	}{{devCreated, &d.CreateTime}, {devActive, &d.ActiveTime}, {devExpire, &d.ExpireAt}, {devStatusTime, &d.StatusTime}}
}

// nodeOfDefaultID returns the node id of a device id of IoTDA's default
// form, {product_id}_{node_id}; false for any other.
func nodeOfDefaultID(id, product string) (string, bool) {
	rest, ok := strings.CutPrefix(id, product)
	if !ok {
		return "", false
	}
	return strings.CutPrefix(rest, "_")
}

// deviceBlob is the cache's copy of a device: its binary record with the
// secrets and client id tokens in the clear (it is never stored). It is
// one string with no pointers inside, so the collector marks one object
// per cached device instead of a dozen, and it takes a fraction of a
// decoded Device's memory; a hit decodes it with its strings as
// substrings of it.
type deviceBlob string

func blobOf(d *Device) deviceBlob {
	rec := d
	if len(d.ClientIDs) > 0 {
		cp := *d
		cp.ClientIDs = make([]ClientID, len(d.ClientIDs))
		for i, c := range d.ClientIDs {
			cp.ClientIDs[i] = ClientID{ClientID: c.ClientID, Sealed: []byte(c.Token), CreateTime: c.CreateTime}
		}
		rec = &cp
	}
	b := appendDeviceRecord(make([]byte, 0, 128+len(d.ExtensionInfo)), rec, d.Auth.Secret, d.Auth.SecondarySecret, false)
	return deviceBlob(b)
}

// device decodes the blob of device id.
func (b deviceBlob) device(id string) (*Device, error) {
	d, secret, secondary, err := decodeDeviceRecord(id, string(b))
	if err != nil {
		return nil, fmt.Errorf("cached device %s: %w", id, err)
	}
	d.Auth.Secret, d.Auth.SecondarySecret = secret, secondary
	for i := range d.ClientIDs {
		c := &d.ClientIDs[i]
		c.Token, c.Sealed = string(c.Sealed), nil
	}
	return &d, nil
}

// decodeDeviceRecord reads the binary record of device id, which holds
// secrets and client id tokens as they were given to appendDeviceRecord
// (sealed in the store, plain in the cache's copy).
func decodeDeviceRecord[T string | []byte](id string, b T) (d Device, secret, secondary T, err error) {
	r := &binReader[T]{b: b}
	if v := r.byte(); r.err == nil && v != deviceRecordV1 {
		return Device{}, b[:0], b[:0], fmt.Errorf("device record version %d is unknown", v)
	}
	flags := r.uvarint()
	d.DeviceID = id
	d.ProjectID = r.string()
	if flags&devNodeInID == 0 {
		d.NodeID = r.string()
	}
	d.ProductID, d.GatewayID, d.DeviceName, d.Description = r.string(), r.string(), r.string(), r.string()
	if flags&devNodeInID != 0 && r.err == nil {
		var ok bool
		if d.NodeID, ok = nodeOfDefaultID(id, d.ProductID); !ok {
			return Device{}, b[:0], b[:0], fmt.Errorf("device record says its id is product_node, but %q is not of product %q", id, d.ProductID)
		}
	}
	d.ExtensionInfo = r.copied()
	d.Auth.Type, d.Auth.Fingerprint, d.Auth.SecondaryFingerprint = AuthType(r.string()), r.string(), r.string()
	d.Auth.Timeout = r.varint()
	d.Auth.SecureAccess, d.Auth.TimeoutSet = flags&devSecure != 0, flags&devTimeoutSet != 0
	d.Frozen, d.ClientIDKept = flags&devFrozen != 0, flags&devClientIDKept != 0
	for _, t := range deviceTimes(&d) {
		if flags&t.flag != 0 {
			*t.at = r.time()
		}
	}
	if flags&devSeqRaw != 0 {
		var seq [2 * eventIDBytes]byte
		n := hex.Encode(seq[:], []byte(r.fixed(eventIDBytes)))
		d.Seq = string(seq[:n])
	} else {
		d.Seq = r.string()
	}
	d.DynReg = r.string()
	if n := r.count(3); n > 0 { // a client id takes at least 3 bytes
		d.ClientIDs = make([]ClientID, 0, n)
		for range n {
			d.ClientIDs = append(d.ClientIDs, ClientID{ClientID: r.string(), Sealed: r.copied(), CreateTime: r.time()})
		}
	}
	if n := r.count(2); n > 0 { // a tag takes at least 2 bytes
		d.Tags = make([]Tag, 0, n)
		for range n {
			d.Tags = append(d.Tags, Tag{Key: r.string(), Value: r.string()})
		}
	}
	secret, secondary = r.bytes(), r.bytes()
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d bytes after the device record", len(r.b))
	}
	if r.err != nil {
		return Device{}, b[:0], b[:0], r.err
	}
	return d, secret, secondary, nil
}

// compactExtension is the extension info as the JSON record stored it
// (json.Marshal compacts a RawMessage), so both forms read back the same.
func compactExtension(ext json.RawMessage) json.RawMessage {
	if len(ext) == 0 {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, ext); err != nil {
		return ext // checked on input; a record keeps what it was given
	}
	if buf.Len() == len(ext) {
		return ext
	}
	return buf.Bytes()
}
