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

// byHandle is the stored record of r's node whose handle is h.
func byHandle(t *testing.T, r *Registry, h string) (SessionRecord, bool) {
	t.Helper()
	for _, rec := range records(t, r) {
		if rec.Handle == h {
			return rec, true
		}
	}
	return SessionRecord{}, false
}

// TestSessionRecords runs on a single node (which keeps no handle index:
// records are listed) and on a cluster's node (found by handle too).
func TestSessionRecords(t *testing.T) {
	for _, node := range []string{"", "n1"} {
		t.Run("node="+node, func(t *testing.T) {
			_, st := newTestRegistry(t, nil)
			r, err := New(Options{Store: st, MasterKey: bytes.Repeat([]byte{7}, 32), Node: node})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			testSessionRecords(t, r)
		})
	}
}

func testSessionRecords(t *testing.T, r *Registry) {
	mustProduct(t, r, "proj", "coapp", "CoAP")
	ctx := context.Background()
	indexed := r.node != ""
	// found reports whether the record with handle h is stored, by the
	// handle index on a cluster (which must agree with the listing).
	found := func(h string) bool {
		t.Helper()
		rec, listed := byHandle(t, r, h)
		got, err := r.SessionRecordByHandle(ctx, h)
		switch {
		case !indexed:
			if !errors.Is(err, ErrSessionHandlesNotIndexed) {
				t.Fatalf("by handle on a single node: %v", err)
			}
		case listed && (err != nil || got.DeviceID != rec.DeviceID):
			t.Fatalf("by handle %s: %+v %v, listed %+v", h, got, err, rec)
		case !listed && !errors.Is(err, ErrNotFound):
			t.Fatalf("by handle %s: %+v %v, not listed", h, got, err)
		}
		return listed
	}
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
	if len(got) != 2 || !bytes.Equal(got[a].Data, []byte("one")) || !got[b].Expires.Equal(exp) || got[a].Node != r.node {
		t.Fatalf("records %+v", got)
	}
	if !found("h2") {
		t.Fatal("h2 not stored")
	}
	// A single node writes no handle entry: its re-registrations write one
	// key and read none.
	if n, want := handleEntries(t, r), map[bool]int{false: 0, true: 2}[indexed]; n != want {
		t.Fatalf("%d handle entries, want %d", n, want)
	}
	if found("h3") {
		t.Fatal("a missing device's record stored")
	}

	// A new session of a replaces its record and its handle.
	if err := r.SaveSessionRecords(ctx, []SessionRecord{{DeviceID: a, Handle: "h4", Expires: exp}}, nil); err != nil {
		t.Fatal(err)
	}
	if found("h1") || !found("h4") {
		t.Fatal("the new session did not replace the old one")
	}
	// Dropping the old session leaves the new one; dropping the new one
	// deletes it.
	if err := r.SaveSessionRecords(ctx, nil, []SessionRecord{{DeviceID: a, Handle: "h1"}}); err != nil {
		t.Fatal(err)
	}
	if !found("h4") {
		t.Fatal("dropping an old handle removed the new record")
	}
	if err := r.SaveSessionRecords(ctx, nil, []SessionRecord{{DeviceID: a, Handle: "h4"}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := records(t, r)[a]; ok || found("h4") {
		t.Fatal("dropped record still stored")
	}
	// Deleting a device deletes its record.
	if err := r.DeleteDevice(ctx, "proj", b); err != nil {
		t.Fatal(err)
	}
	if found("h2") {
		t.Fatal("a deleted device's record is still stored")
	}
	if n := handleEntries(t, r); n != 0 {
		t.Fatalf("%d handle entries left", n)
	}
}

// handleEntries counts the stored handle index entries.
func handleEntries(t *testing.T, r *Registry) int {
	t.Helper()
	var n int
	if err := r.view(context.Background(), func(rd Reader) error {
		return rd.Scan(prefixKey(famSessionHandle), nil, false, func(k, v []byte) (bool, error) { n++; return true, nil })
	}); err != nil {
		t.Fatal(err)
	}
	return n
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
