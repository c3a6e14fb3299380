package registry

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestSessionRecordEncoding(t *testing.T) {
	for _, rec := range []SessionRecord{
		{DeviceID: "d", Handle: "h", Expires: time.Unix(0, 1).UTC()},
		{DeviceID: "prod_1", Handle: "abcdefghijklmnop", Node: "node-1", Expires: time.Date(2026, 12, 7, 8, 0, 0, 5, time.UTC), Data: []byte{1, 2, 3}},
	} {
		b := rec.encode()
		got, err := decodeSessionRecord(rec.DeviceID, b)
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.Data) == 0 {
			rec.Data = []byte{}
		}
		if !reflect.DeepEqual(got, rec) {
			t.Fatalf("got %+v, want %+v", got, rec)
		}
		for n := range len(b) - len(rec.Data) {
			if _, err := decodeSessionRecord(rec.DeviceID, b[:n]); err == nil {
				t.Fatalf("truncated to %d bytes: decoded", n)
			}
		}
	}
	if _, err := decodeSessionRecord("d", append([]byte{9}, make([]byte, 12)...)); err == nil {
		t.Fatal("unknown version decoded")
	}
}

// records lists the stored records of r's node by device.
func records(t *testing.T, r *Registry) map[string]SessionRecord {
	t.Helper()
	out := map[string]SessionRecord{}
	if err := r.SessionRecords(context.Background(), func(rec SessionRecord) bool {
		out[rec.DeviceID] = rec
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSessionRecords(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	mustProduct(t, r, "proj", "coapp", "CoAP")
	ctx := context.Background()
	a := mustCreate(t, r, NewDevice{ProjectID: "proj", NodeID: "a", ProductID: "coapp"})
	b := mustCreate(t, r, NewDevice{ProjectID: "proj", NodeID: "b", ProductID: "coapp"})
	exp := time.Now().Add(time.Hour).UTC().Truncate(0)
	put := []SessionRecord{{DeviceID: a, Handle: "h1", Expires: exp, Data: []byte("one")},
		{DeviceID: b, Handle: "h2", Expires: exp, Data: []byte("two")},
		{DeviceID: "ghost", Handle: "h3", Expires: exp}} // no such device: not stored
	if err := r.SaveSessionRecords(ctx, put, nil); err != nil {
		t.Fatal(err)
	}
	got := records(t, r)
	if len(got) != 2 || !bytes.Equal(got[a].Data, []byte("one")) || !got[b].Expires.Equal(exp) {
		t.Fatalf("records %+v", got)
	}
	if rec, err := r.SessionRecordByHandle(ctx, "h2"); err != nil || rec.DeviceID != b {
		t.Fatalf("by handle: %+v %v", rec, err)
	}
	if _, err := r.SessionRecordByHandle(ctx, "h3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a deleted device's handle: %v", err)
	}

	// A new session of a replaces its record and its handle.
	if err := r.SaveSessionRecords(ctx, []SessionRecord{{DeviceID: a, Handle: "h4", Expires: exp}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SessionRecordByHandle(ctx, "h1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replaced handle: %v", err)
	}
	// Dropping the old session leaves the new one; dropping the new one
	// deletes it.
	if err := r.SaveSessionRecords(ctx, nil, []SessionRecord{{DeviceID: a, Handle: "h1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SessionRecordByHandle(ctx, "h4"); err != nil {
		t.Fatalf("dropping an old handle removed the new record: %v", err)
	}
	if err := r.SaveSessionRecords(ctx, nil, []SessionRecord{{DeviceID: a, Handle: "h4"}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := records(t, r)[a]; ok {
		t.Fatal("dropped record still stored")
	}
	// Deleting a device deletes its record.
	if err := r.DeleteDevice(ctx, "proj", b); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SessionRecordByHandle(ctx, "h2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a deleted device's record: %v", err)
	}
}

func TestSessionRecordsOfNodes(t *testing.T) {
	_, st := newTestRegistry(t, nil)
	node := func(name string) *Registry {
		r, err := New(Options{Store: st, MasterKey: bytes.Repeat([]byte{7}, 32), Node: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	n1, n2 := node("n1"), node("n2")
	mustProduct(t, n1, "proj", "coapp", "CoAP")
	d := mustCreate(t, n1, NewDevice{ProjectID: "proj", NodeID: "d", ProductID: "coapp"})
	ctx := context.Background()
	rec := SessionRecord{DeviceID: d, Handle: "h", Expires: time.Now().Add(time.Hour)}
	if err := n1.SaveSessionRecords(ctx, []SessionRecord{rec}, nil); err != nil {
		t.Fatal(err)
	}
	if len(records(t, n1)) != 1 || len(records(t, n2)) != 0 {
		t.Fatal("a node lists another's records")
	}
	// Node 2 adopts the session; node 1's late drop leaves it.
	if err := n2.SaveSessionRecords(ctx, []SessionRecord{rec}, nil); err != nil {
		t.Fatal(err)
	}
	if err := n1.SaveSessionRecords(ctx, nil, []SessionRecord{rec}); err != nil {
		t.Fatal(err)
	}
	got, err := n1.SessionRecordByHandle(ctx, "h")
	if err != nil || got.Node != "n2" {
		t.Fatalf("after node 1's drop: %+v %v", got, err)
	}
	if len(records(t, n2)) != 1 || len(records(t, n1)) != 0 {
		t.Fatal("records not listed by their node")
	}
}
