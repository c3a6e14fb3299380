package regions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// Entry is what the centre knows of an assigned device: no secret, no
// data, only where it is.
type Entry struct {
	ProductKey string `json:"pk"`
	DeviceName string `json:"dn"`
	ProjectID  string `json:"project"`
	DeviceID   string `json:"id"`
	Region     string `json:"region"`
	// From is the region the device is moving away from: its copy there
	// is deleted once the device connected in Region, or after the grace
	// period (see Centre.Sweep); empty when no move is under way.
	From string `json:"from,omitempty"`
	// Since is when the device was assigned to Region.
	Since time.Time `json:"since"`
}

// Directory is the centre's only state. Keys (all under "act/"):
//
//	act/d/{pk}\x00{dn}   the Entry
//	act/i/{id}          {pk}\x00{dn}: the Entry by device id (device ids
//	                    are unique across projects, as in IoTDA)
//	act/m/{pk}\x00{dn}   empty: a move under way (Entry.From set)
type Directory struct {
	store kv.Store
}

// NewDirectory keeps the directory in s.
func NewDirectory(s kv.Store) *Directory { return &Directory{store: s} }

// DirectoryPrefix is the prefix of every key the directory writes.
const DirectoryPrefix = "act/"

func pair(a, b string) []byte { return []byte(a + "\x00" + b) }

func entryKey(pk, dn string) []byte  { return append([]byte("act/d/"), pair(pk, dn)...) }
func idKey(id string) []byte         { return append([]byte("act/i/"), id...) }
func movingKey(pk, dn string) []byte { return append([]byte("act/m/"), pair(pk, dn)...) }
func movingPrefix() []byte           { return []byte("act/m/") }
func splitPair(b []byte) (string, string) {
	a, c, _ := bytes.Cut(b, []byte{0})
	return string(a), string(c)
}

func getEntry(rd kv.Reader, pk, dn string) (*Entry, error) {
	b, err := rd.Get(entryKey(pk, dn))
	if err != nil {
		return nil, err
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("directory entry %s/%s: %w", pk, dn, err)
	}
	return &e, nil
}

// Get returns the device's entry, or kv.ErrNotFound.
func (d *Directory) Get(ctx context.Context, pk, dn string) (*Entry, error) {
	var e *Entry
	err := d.store.View(ctx, func(rd kv.Reader) error {
		var err error
		e, err = getEntry(rd, pk, dn)
		return err
	})
	return e, err
}

// ByDeviceID returns the device's entry, or kv.ErrNotFound.
func (d *Directory) ByDeviceID(ctx context.Context, id string) (*Entry, error) {
	var e *Entry
	err := d.store.View(ctx, func(rd kv.Reader) error {
		b, err := rd.Get(idKey(id))
		if err != nil {
			return err
		}
		pk, dn := splitPair(b)
		e, err = getEntry(rd, pk, dn)
		return err
	})
	return e, err
}

// errAssigned is returned inside Assign's transaction when the device
// was assigned meanwhile.
var errAssigned = errors.New("assigned meanwhile")

// Assign records e unless the device has an entry already; it returns
// the entry in force (e, or the earlier one: the first assignment is
// sticky).
func (d *Directory) Assign(ctx context.Context, e Entry) (*Entry, error) {
	var cur *Entry
	err := d.store.Update(ctx, func(tx kv.Txn) error {
		old, err := getEntry(tx, e.ProductKey, e.DeviceName)
		if err == nil {
			cur = old
			return errAssigned
		}
		if !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		cur = &e
		return putEntry(tx, nil, &e)
	})
	if errors.Is(err, errAssigned) {
		err = nil
	}
	return cur, err
}

// Update replaces the device's entry with what fn makes of it, in one
// transaction; fn sees kv.ErrNotFound's absence as a nil entry only if
// the device is assigned (else Update returns kv.ErrNotFound).
func (d *Directory) Update(ctx context.Context, pk, dn string, fn func(*Entry) error) (*Entry, error) {
	var out *Entry
	err := d.store.Update(ctx, func(tx kv.Txn) error {
		old, err := getEntry(tx, pk, dn)
		if err != nil {
			return err
		}
		e := *old
		if err := fn(&e); err != nil {
			return err
		}
		out = &e
		return putEntry(tx, old, &e)
	})
	return out, err
}

func putEntry(tx kv.Txn, old, e *Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := tx.Set(entryKey(e.ProductKey, e.DeviceName), b); err != nil {
		return err
	}
	if old != nil && old.DeviceID != e.DeviceID {
		if err := tx.Delete(idKey(old.DeviceID)); err != nil {
			return err
		}
	}
	if err := tx.Set(idKey(e.DeviceID), pair(e.ProductKey, e.DeviceName)); err != nil {
		return err
	}
	if e.From != "" {
		return tx.Set(movingKey(e.ProductKey, e.DeviceName), nil)
	}
	return tx.Delete(movingKey(e.ProductKey, e.DeviceName))
}

// Moving returns the entries of the moves under way, at most limit.
func (d *Directory) Moving(ctx context.Context, limit int) ([]Entry, error) {
	var out []Entry
	err := d.store.View(ctx, func(rd kv.Reader) error {
		return rd.Scan(movingPrefix(), nil, false, func(k, _ []byte) (bool, error) {
			pk, dn := splitPair(k[len(movingPrefix()):])
			e, err := getEntry(rd, pk, dn)
			if err != nil {
				return false, err
			}
			out = append(out, *e)
			return len(out) < limit, nil
		})
	})
	return out, err
}

// Forget deletes the device's entry if it is still e's assignment, with
// no move under way.
func (d *Directory) Forget(ctx context.Context, e *Entry) error {
	return d.store.Update(ctx, func(tx kv.Txn) error {
		cur, err := getEntry(tx, e.ProductKey, e.DeviceName)
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if cur.Region != e.Region || cur.DeviceID != e.DeviceID || cur.From != "" {
			return nil
		}
		if err := tx.Delete(entryKey(cur.ProductKey, cur.DeviceName)); err != nil {
			return err
		}
		return tx.Delete(idKey(cur.DeviceID))
	})
}
