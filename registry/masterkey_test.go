package registry

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
)

// openWithKey opens a registry on s with a master key of bytes b.
func openWithKey(t *testing.T, s kv.Store, b byte) *Registry {
	t.Helper()
	r, err := New(Options{Store: s, MasterKey: bytes.Repeat([]byte{b}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// The first start seals the check; the same key opens it again, another
// key is refused with ErrMasterKeyMismatch, and a refused key writes
// nothing (the right key still passes).
func TestCheckMasterKey(t *testing.T) {
	ctx := context.Background()
	s := memStore(t)
	if err := openWithKey(t, s, 1).CheckMasterKey(ctx); err != nil {
		t.Fatalf("first start: %v", err)
	}
	if err := openWithKey(t, s, 1).CheckMasterKey(ctx); err != nil {
		t.Fatalf("same key: %v", err)
	}
	if err := openWithKey(t, s, 2).CheckMasterKey(ctx); !errors.Is(err, ErrMasterKeyMismatch) {
		t.Fatalf("other key: %v, want ErrMasterKeyMismatch", err)
	}
	if err := openWithKey(t, s, 1).CheckMasterKey(ctx); err != nil {
		t.Fatalf("same key after a refused one: %v", err)
	}
}

// A store written before the check existed (devices, no check record) is
// checked on a device's sealed secret before the record is written.
func TestCheckMasterKeyOnOlderStore(t *testing.T) {
	ctx := context.Background()
	s := memStore(t)
	old := openWithKey(t, s, 1)
	mustProduct(t, old, "proj", "m", "MQTT")
	if _, err := old.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n1", ProductID: "m"}); err != nil {
		t.Fatal(err)
	}
	if err := openWithKey(t, s, 2).CheckMasterKey(ctx); !errors.Is(err, ErrMasterKeyMismatch) {
		t.Fatalf("other key on an older store: %v, want ErrMasterKeyMismatch", err)
	}
	err := s.View(ctx, func(rd kv.Reader) error {
		_, err := rd.Get(keyCheckKey())
		return err
	})
	if !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("a refused key wrote the check record: %v", err)
	}
	if err := openWithKey(t, s, 1).CheckMasterKey(ctx); err != nil {
		t.Fatalf("the store's key: %v", err)
	}
}

// fullStore refuses every write as a full disk does.
type fullStore struct{ kv.Store }

func (fullStore) Update(context.Context, func(kv.Txn) error) error { return kv.ErrFull }

// On a full disk a restart still checks the key (the record is read, not
// written), and a store full before its first check is checked against
// the devices' secrets without recording.
func TestCheckMasterKeyOnAFullStore(t *testing.T) {
	ctx := context.Background()
	s := memStore(t)
	if err := openWithKey(t, s, 1).CheckMasterKey(ctx); err != nil {
		t.Fatal(err)
	}
	if err := openWithKey(t, fullStore{s}, 1).CheckMasterKey(ctx); err != nil {
		t.Fatalf("same key, full store: %v", err)
	}
	if err := openWithKey(t, fullStore{s}, 2).CheckMasterKey(ctx); !errors.Is(err, ErrMasterKeyMismatch) {
		t.Fatalf("other key, full store: %v, want ErrMasterKeyMismatch", err)
	}

	fresh := memStore(t)
	r := openWithKey(t, fresh, 1)
	mustProduct(t, r, "p", "m", "MQTT")
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "m", NodeID: "n"}); err != nil {
		t.Fatal(err)
	}
	if err := openWithKey(t, fullStore{fresh}, 1).CheckMasterKey(ctx); err != nil {
		t.Fatalf("unrecorded store, full, same key: %v", err)
	}
	if err := openWithKey(t, fullStore{fresh}, 2).CheckMasterKey(ctx); !errors.Is(err, ErrMasterKeyMismatch) {
		t.Fatalf("unrecorded store, full, other key: %v, want ErrMasterKeyMismatch", err)
	}
}
