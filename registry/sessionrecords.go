package registry

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// Session records let a protocol adapter keep what it must know of a
// device's session (an LwM2M registration: its location, lifetime, object
// links, observations) across a restart of the node, and share it with
// the other nodes of a cluster, without the registry knowing the
// protocol: the record's data is the adapter's, opaque here. A device has
// at most one record. On a cluster a record is also found by the
// adapter's handle for the session (the LwM2M registration id, unique),
// since a device's next request may reach a node that does not hold its
// session; a single node holds every session it serves in memory and
// reads records back only at start (SessionRecords), so it keeps no
// handle index: a re-registration then writes one key and reads none.
//
// The adapter batches its changes (SaveSessionRecords writes many in one
// transaction), so a register storm adds a few group-committed writes,
// not one per device.

// SessionRecord is one device's stored session.
type SessionRecord struct {
	DeviceID string
	// Handle is the adapter's unique name for the session.
	Handle string
	// Node is the node that wrote the record ("" on a single node); set
	// by SaveSessionRecords.
	Node string
	// Expires is when the session ends unless renewed; the adapter
	// decides what to do with a record past it.
	Expires time.Time
	// Data is the adapter's own encoding of the session.
	Data []byte
}

// sessionRecordVersion is the first byte of a stored record.
const sessionRecordVersion = 1

// encode lays the record out as: version, expiry (8 bytes, unix ns),
// node and handle (each a uvarint length and the bytes), then the data.
func (s SessionRecord) encode() []byte {
	b := make([]byte, 0, 1+8+2*binary.MaxVarintLen16+len(s.Node)+len(s.Handle)+len(s.Data))
	b = append(b, sessionRecordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Expires.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(s.Node)))
	b = append(b, s.Node...)
	b = binary.AppendUvarint(b, uint64(len(s.Handle)))
	b = append(b, s.Handle...)
	return append(b, s.Data...)
}

// decodeSessionRecord reads the record of device id stored as v (which
// it does not retain).
func decodeSessionRecord(id string, v []byte) (SessionRecord, error) {
	rec, rest, err := decodeSessionHead(id, v)
	if err != nil {
		return SessionRecord{}, err
	}
	rec.Data = bytes.Clone(rest)
	return rec, nil
}

// decodeSessionHead reads a stored record but its data, which it returns
// as a slice of v: the writes that replace or delete a record need no
// copy of it.
func decodeSessionHead(id string, v []byte) (SessionRecord, []byte, error) {
	bad := func(what string) (SessionRecord, []byte, error) {
		return SessionRecord{}, nil, fmt.Errorf("session record of %s: %s", id, what)
	}
	if len(v) < 9 {
		return bad("truncated")
	}
	if v[0] != sessionRecordVersion {
		return bad(fmt.Sprintf("unknown version %d", v[0]))
	}
	rec := SessionRecord{DeviceID: id, Expires: time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))).UTC()}
	rest := v[9:]
	field := func() (string, bool) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < n {
			return "", false
		}
		s := string(rest[k : k+int(n)])
		rest = rest[k+int(n):]
		return s, true
	}
	var ok bool
	if rec.Node, ok = field(); !ok {
		return bad("truncated node")
	}
	if rec.Handle, ok = field(); !ok {
		return bad("truncated handle")
	}
	return rec, rest, nil
}

// sessionRecordChunk bounds the records one transaction writes.
const sessionRecordChunk = 512

// SaveSessionRecords stores put (each replaces its device's record,
// whatever node wrote that) and deletes the records of drop that are
// still the ones named (same handle) and still this node's: a record
// another node has taken over since is its to delete. Records of devices
// that no longer exist are not stored. Writes are batched, at most
// sessionRecordChunk records a transaction; on error, earlier chunks are
// kept.
func (r *Registry) SaveSessionRecords(ctx context.Context, put, drop []SessionRecord) error {
	for len(put) > 0 || len(drop) > 0 {
		np := min(len(put), sessionRecordChunk)
		nd := min(len(drop), sessionRecordChunk-np)
		p, d := put[:np], drop[:nd]
		put, drop = put[np:], drop[nd:]
		if err := r.write(ctx, func(w Writer) error {
			for _, rec := range d {
				if err := r.dropSessionRecord(w, rec); err != nil {
					return err
				}
			}
			for _, rec := range p {
				if err := r.putSessionRecord(w, rec); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("save session records: %w", err)
		}
	}
	return nil
}

// ErrSessionHandlesNotIndexed: SessionRecordByHandle on a single node,
// which keeps no index of handles.
var ErrSessionHandlesNotIndexed = errors.New("session records are found by handle only on a cluster")

// indexesSessionHandles reports whether session records are indexed by
// handle: on a cluster only.
func (r *Registry) indexesSessionHandles() bool { return r.node != "" }

func (r *Registry) putSessionRecord(w Writer, rec SessionRecord) error {
	if ok, err := deviceExists(w, rec.DeviceID); err != nil || !ok {
		return err // deleted meanwhile: its session goes with it
	}
	rec.Node = r.node
	if !r.indexesSessionHandles() {
		return w.Set(sessionRecordKey(rec.DeviceID), rec.encode())
	}
	old, _, found, err := readSessionHead(w, rec.DeviceID)
	if err != nil {
		return err
	}
	if found && old.Handle != rec.Handle {
		if err := w.Delete(sessionHandleKey(old.Handle)); err != nil {
			return err
		}
	}
	if err := w.Set(sessionRecordKey(rec.DeviceID), rec.encode()); err != nil {
		return err
	}
	if found && old.Handle == rec.Handle {
		return nil
	}
	return w.Set(sessionHandleKey(rec.Handle), []byte(rec.DeviceID))
}

func (r *Registry) dropSessionRecord(w Writer, rec SessionRecord) error {
	old, _, found, err := readSessionHead(w, rec.DeviceID)
	if err != nil || !found || old.Handle != rec.Handle || old.Node != r.node {
		return err
	}
	return r.deleteSessionRecord(w, old)
}

func (r *Registry) deleteSessionRecord(w Writer, rec SessionRecord) error {
	if err := w.Delete(sessionRecordKey(rec.DeviceID)); err != nil {
		return err
	}
	if !r.indexesSessionHandles() && rec.Node == "" {
		return nil // written by a single node: no handle entry
	}
	return w.Delete(sessionHandleKey(rec.Handle))
}

// deleteDeviceSession deletes the session record of a device being
// deleted, with its handle index.
func (r *Registry) deleteDeviceSession(w Writer, id string) error {
	rec, _, found, err := readSessionHead(w, id)
	if err != nil || !found {
		return err
	}
	return r.deleteSessionRecord(w, rec)
}

func readSessionRecord(rd Reader, id string) (SessionRecord, bool, error) {
	rec, rest, found, err := readSessionHead(rd, id)
	if found {
		rec.Data = rest // Get returned a copy
	}
	return rec, found, err
}

// readSessionHead reads the device's record but does not decode its data.
func readSessionHead(rd Reader, id string) (rec SessionRecord, data []byte, found bool, err error) {
	v, err := rd.Get(sessionRecordKey(id))
	if errors.Is(err, kv.ErrNotFound) {
		return SessionRecord{}, nil, false, nil
	}
	if err != nil {
		return SessionRecord{}, nil, false, fmt.Errorf("read session record of %s: %w", id, err)
	}
	rec, data, err = decodeSessionHead(id, v)
	return rec, data, err == nil, err
}

// SessionRecordByHandle returns the record whose handle is h, or
// ErrNotFound; on a single node, ErrSessionHandlesNotIndexed.
func (r *Registry) SessionRecordByHandle(ctx context.Context, h string) (SessionRecord, error) {
	if !r.indexesSessionHandles() {
		return SessionRecord{}, ErrSessionHandlesNotIndexed
	}
	var (
		rec   SessionRecord
		found bool
	)
	err := r.view(ctx, func(rd Reader) error {
		id, err := rd.Get(sessionHandleKey(h))
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		rec, found, err = readSessionRecord(rd, string(id))
		found = found && rec.Handle == h
		return err
	})
	if err != nil {
		return SessionRecord{}, fmt.Errorf("session record %s: %w", h, err)
	}
	if !found {
		return SessionRecord{}, ErrNotFound
	}
	return rec, nil
}

// sessionScanPage bounds the records one read transaction of
// SessionRecords scans, so a large fleet is not read in one snapshot.
const sessionScanPage = 4096

// SessionRecords calls fn with each record this node wrote (on a single
// node, every record), in device order, until fn returns false. A record
// that cannot be decoded is skipped with an error in the log.
func (r *Registry) SessionRecords(ctx context.Context, fn func(SessionRecord) bool) error {
	prefix := prefixKey(famSessionRecord)
	var from []byte
	for {
		var batch []SessionRecord
		var next []byte
		err := r.view(ctx, func(rd Reader) error {
			batch, next = batch[:0], nil
			n := 0
			return rd.Scan(prefix, from, false, func(k, v []byte) (bool, error) {
				if n == sessionScanPage {
					next = bytes.Clone(k)
					return false, nil
				}
				n++
				rec, err := decodeSessionRecord(string(k[len(prefix):]), v)
				if err != nil {
					r.log.Error("skipping a session record", "err", err)
					return true, nil
				}
				if rec.Node == r.node {
					batch = append(batch, rec)
				}
				return true, nil
			})
		})
		if err != nil {
			return fmt.Errorf("read session records: %w", err)
		}
		for _, rec := range batch {
			if !fn(rec) {
				return nil
			}
		}
		if next == nil {
			return nil
		}
		from = next
	}
}
