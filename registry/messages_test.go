package registry

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// scanRecorder records where the scans of one key prefix start.
type scanRecorder struct {
	kv.Store
	prefix []byte

	mu    sync.Mutex
	froms [][]byte
}

func (s *scanRecorder) Update(ctx context.Context, fn func(kv.Txn) error) error {
	return s.Store.Update(ctx, func(w kv.Txn) error { return fn(recordingWriter{w, s}) })
}

func (s *scanRecorder) View(ctx context.Context, fn func(Reader) error) error {
	return s.Store.View(ctx, func(rd Reader) error { return fn(recordingReader{rd, s}) })
}

func (s *scanRecorder) record(prefix, from []byte) {
	if bytes.Equal(prefix, s.prefix) {
		s.mu.Lock()
		s.froms = append(s.froms, append([]byte(nil), from...))
		s.mu.Unlock()
	}
}

// lastFrom is where the last recorded scan started.
func (s *scanRecorder) lastFrom() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.froms) == 0 {
		return nil
	}
	return s.froms[len(s.froms)-1]
}

type recordingReader struct {
	Reader
	s *scanRecorder
}

func (r recordingReader) Scan(prefix, from []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	r.s.record(prefix, from)
	return r.Reader.Scan(prefix, from, reverse, fn)
}

type recordingWriter struct {
	kv.Txn
	s *scanRecorder
}

func (w recordingWriter) Scan(prefix, from []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	w.s.record(prefix, from)
	return w.Txn.Scan(prefix, from, reverse, fn)
}

// recordedRegistry is a registry on an in-memory store whose scans of
// prefix are recorded (nil prefix: set it later).
func recordedRegistry(t *testing.T, prefix []byte, clock *fakeClock) (*Registry, *scanRecorder) {
	t.Helper()
	rec := &scanRecorder{prefix: prefix}
	r, _ := newTestRegistryOn(t, clock, func(s kv.Store) kv.Store { rec.Store = s; return rec })
	return r, rec
}

func keptPayloads(t *testing.T, r *Registry, project, dev string) []string {
	t.Helper()
	msgs, err := r.Messages(context.Background(), project, dev, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, string(m.Payload))
	}
	return out
}

// wantNewest is the payloads "from".."to" newest first, as Messages lists them.
func wantNewest(from, to int) string {
	var s []string
	for i := to; i >= from; i-- {
		s = append(s, fmt.Sprint(i))
	}
	return strings.Join(s, ",")
}

// Dropping a device's oldest message seeks to it instead of scanning from
// the start of the device's messages, where Badger keeps the tombstones
// of every message dropped before.
func TestDroppingOldestMessageSeeksToIt(t *testing.T) {
	r, rec := recordedRegistry(t, nil, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "m1", "MQTT")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	rec.prefix = prefixKey("u", d.DeviceID)
	const extra = 30
	for i := range MessagesKept + extra {
		if err := r.AddMessage(ctx, d.DeviceID, Message{Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if len(rec.froms) != extra {
		t.Fatalf("%d scans of the messages for %d drops", len(rec.froms), extra)
	}
	for i, from := range rec.froms {
		if !bytes.HasPrefix(from, rec.prefix) || len(from) == len(rec.prefix) {
			t.Fatalf("drop %d scanned from %q, not from the oldest message", i, from)
		}
	}
	if got := strings.Join(keptPayloads(t, r, "proj", d.DeviceID), ","); got != wantNewest(extra, MessagesKept+extra-1) {
		t.Fatalf("kept %s", got)
	}
}

// A count record written before the oldest was kept in it ("100") still
// drops the oldest, and from then on records it.
func TestMessageCountRecordWithoutOldest(t *testing.T) {
	r, st := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "m1", "MQTT")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range MessagesKept {
		if err := r.AddMessage(ctx, d.DeviceID, Message{Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Update(context.Background(), func(w kv.Txn) error {
		return w.Set(messageCountKey(d.DeviceID), []byte(fmt.Sprint(MessagesKept)))
	}); err != nil {
		t.Fatal(err)
	}
	for i := MessagesKept; i < MessagesKept+3; i++ {
		if err := r.AddMessage(ctx, d.DeviceID, Message{Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(keptPayloads(t, r, "proj", d.DeviceID), ","); got != wantNewest(3, MessagesKept+2) {
		t.Fatalf("kept %s", got)
	}
	var m messageMeta
	if err := st.View(context.Background(), func(rd Reader) (err error) { m, err = readMessageMeta(rd, d.DeviceID); return err }); err != nil {
		t.Fatal(err)
	}
	var oldest string
	if err := st.View(context.Background(), func(rd Reader) error {
		return rd.Scan(prefixKey("u", d.DeviceID), nil, false, func(k, _ []byte) (bool, error) {
			oldest = string(k[len(prefixKey("u", d.DeviceID)):])
			return false, nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if m.n != MessagesKept || m.oldest != oldest {
		t.Fatalf("count record %+v, oldest kept message %s", m, oldest)
	}
}

// A message stored after the clock went back has the smallest seq: it is
// the oldest, in the record as in the key order, and is dropped first.
func TestMessageStoredAfterClockWentBack(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	r, _ := newTestRegistry(t, clock)
	ctx := context.Background()
	mustProduct(t, r, "proj", "m1", "MQTT")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	add := func(payload string) {
		t.Helper()
		if err := r.AddMessage(ctx, d.DeviceID, Message{Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
	}
	add("before")
	clock.Advance(-time.Hour)
	add("after")
	for i := 2; i < MessagesKept; i++ {
		add(fmt.Sprint(i))
	}
	add("last") // drops "after", the smallest seq
	got := keptPayloads(t, r, "proj", d.DeviceID)
	if len(got) != MessagesKept || got[len(got)-1] != "2" || got[0] != "before" {
		t.Fatalf("kept %d messages, newest %q, oldest %q", len(got), got[0], got[len(got)-1])
	}
	for _, p := range got {
		if p == "after" {
			t.Fatal(`"after" was kept; another message was dropped`)
		}
	}
}
