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

// A session resumed after a restart reports no status event: the device
// was left ONLINE; a new connection after a restart does.
func TestResumedReportsNoStatusEvent(t *testing.T) {
	st := memStore(t)
	clock := &fakeClock{t: time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)}
	ctx := context.Background()
	statusEvents := func(r *Registry) int {
		n := 0
		for _, e := range allEvents(t, r, "proj") {
			if e.Resource == ResourceDeviceStatus {
				n++
			}
		}
		return n
	}
	r1 := newEventRegistry(t, st, clock, EventOptions{})
	mustProduct(t, r1, "proj", "coapp", "CoAP")
	a := mustCreate(t, r1, NewDevice{ProjectID: "proj", NodeID: "a", ProductID: "coapp"})
	b := mustCreate(t, r1, NewDevice{ProjectID: "proj", NodeID: "b", ProductID: "coapp"})
	for _, id := range []string{a, b} {
		if _, err := r1.Connected(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := r1.flushStatus(ctx); err != nil {
		t.Fatal(err)
	}
	before := statusEvents(r1)
	r1.Close()

	r2 := newEventRegistry(t, st, clock, EventOptions{}) // the restart
	clock.Advance(time.Second)
	if _, err := r2.Resumed(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := r2.flushStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if got := statusEvents(r2); got != before {
		t.Fatalf("%d status events after a resumed session, want %d", got, before)
	}
	if d, _ := r2.Device(ctx, a); d.Status != StatusOnline {
		t.Fatalf("resumed device %s", d.Status)
	}
	if _, err := r2.Connected(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := r2.flushStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if got := statusEvents(r2); got != before+1 {
		t.Fatalf("%d status events after a new connection, want %d", got, before+1)
	}
}
