package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

func newAsyncFixture(t *testing.T) (*Registry, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	r, _ := newTestRegistry(t, clock)
	mustProduct(t, r, "proj", "nb", "CoAP")
	mustProduct(t, r, "proj", "mq", "MQTT")
	ctx := context.Background()
	for _, n := range []NewDevice{{ProjectID: "proj", NodeID: "n1", ProductID: "nb"}, {ProjectID: "proj", NodeID: "m1", ProductID: "mq"}} {
		if _, err := r.CreateDevice(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	return r, clock
}

func TestCreateAsyncCommandValidation(t *testing.T) {
	r, _ := newAsyncFixture(t)
	ctx := context.Background()
	obj := json.RawMessage(`{"value":"1"}`)
	for _, tc := range []struct {
		name   string
		dev    string
		in     NewAsyncCommand
		field  string
		target error
	}{
		{"paras missing", "nb_n1", NewAsyncCommand{}, "paras", nil},
		{"paras not object", "nb_n1", NewAsyncCommand{Paras: json.RawMessage(`[1]`)}, "paras", nil},
		{"paras too big", "nb_n1", NewAsyncCommand{Paras: json.RawMessage(`{"a":"` + string(make([]byte, MaxAsyncParas)) + `"}`)}, "paras", nil},
		{"bad strategy", "nb_n1", NewAsyncCommand{Paras: obj, SendStrategy: "later"}, "send_strategy", nil},
		{"expire too long", "nb_n1", NewAsyncCommand{Paras: obj, ExpireTime: MaxAsyncExpire + 1}, "expire_time", nil},
		{"expire negative", "nb_n1", NewAsyncCommand{Paras: obj, ExpireTime: -1}, "expire_time", nil},
		{"long service id", "nb_n1", NewAsyncCommand{Paras: obj, ServiceID: string(make([]byte, 65))}, "service_id", nil},
		{"unknown device", "nb_zz", NewAsyncCommand{Paras: obj}, "", ErrNotFound},
		{"mqtt device", "mq_m1", NewAsyncCommand{Paras: obj}, "", ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.CreateAsyncCommand(ctx, "proj", tc.dev, tc.in)
			var ve *ValidationError
			switch {
			case tc.field != "":
				if !errors.As(err, &ve) || ve.Field != tc.field {
					t.Fatalf("err = %v, want invalid %s", err, tc.field)
				}
			case !errors.Is(err, tc.target):
				t.Fatalf("err = %v, want %v", err, tc.target)
			}
		})
	}
	if _, err := r.CreateAsyncCommand(ctx, "other", "nb_n1", NewAsyncCommand{Paras: obj}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other project: err = %v, want not found", err)
	}
}

func TestAsyncCommandLifecycle(t *testing.T) {
	r, clock := newAsyncFixture(t)
	ctx := context.Background()
	c, err := r.CreateAsyncCommand(ctx, "proj", "nb_n1", NewAsyncCommand{ServiceID: "LwM2M", CommandName: "READ", Paras: json.RawMessage(`{"path":"/3/0/0"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != AsyncPending || c.SendStrategy != SendDelay || c.ExpireTime != DefaultAsyncExpire || len(c.CommandID) != 32 {
		t.Fatalf("created %+v", c)
	}
	if ok, _ := r.HasPendingAsyncCommands(ctx, "nb_n1"); !ok {
		t.Fatal("no pending command after create")
	}
	if err := r.FinishAsyncCommand(ctx, c.CommandID, AsyncSuccessful, nil); !errors.Is(err, ErrNotSent) {
		t.Fatalf("finish before start: %v", err)
	}
	sent, err := r.StartAsyncCommand(ctx, c.CommandID, 10*time.Second)
	if err != nil || sent.Status != AsyncSent || sent.SentTime.IsZero() {
		t.Fatalf("start: %+v %v", sent, err)
	}
	if _, err := r.StartAsyncCommand(ctx, c.CommandID, time.Second); !errors.Is(err, ErrNotPending) {
		t.Fatalf("second start: %v", err)
	}
	if p, _ := r.PendingAsyncCommands(ctx, "nb_n1", 10); len(p) != 0 {
		t.Fatalf("sent command still pending: %v", p)
	}
	if err := r.FinishAsyncCommand(ctx, c.CommandID, AsyncSuccessful, json.RawMessage(`{"code":"2.05"}`)); err != nil {
		t.Fatal(err)
	}
	got, err := r.AsyncCommand(ctx, "proj", "nb_n1", c.CommandID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != AsyncSuccessful || string(got.Result) != `{"code":"2.05"}` || got.ResponseTime.IsZero() || !got.Deadline.IsZero() {
		t.Fatalf("finished: %+v", got)
	}
	// A final command never changes again, not even by the sweep.
	clock.Advance(72 * time.Hour)
	if n, err := r.SweepAsyncCommands(ctx); err != nil || n != 0 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	if _, err := r.AsyncCommand(ctx, "proj", "mq_m1", c.CommandID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("command read through another device: %v", err)
	}
}

func TestAsyncCommandPendingLimitAndOrder(t *testing.T) {
	r, _ := newAsyncFixture(t)
	ctx := context.Background()
	var ids []string
	for i := 0; i < MaxPendingAsyncCommands; i++ {
		c, err := r.CreateAsyncCommand(ctx, "proj", "nb_n1", NewAsyncCommand{Paras: json.RawMessage(`{"i":1}`)})
		if err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		ids = append(ids, c.CommandID)
	}
	if _, err := r.CreateAsyncCommand(ctx, "proj", "nb_n1", NewAsyncCommand{Paras: json.RawMessage(`{}`)}); !errors.Is(err, ErrQuota) {
		t.Fatalf("21st pending command: %v", err)
	}
	p, err := r.PendingAsyncCommands(ctx, "nb_n1", 100)
	if err != nil || len(p) != MaxPendingAsyncCommands {
		t.Fatalf("pending: %d %v", len(p), err)
	}
	for i, c := range p {
		if c.CommandID != ids[i] {
			t.Fatalf("pending[%d] = %s, want %s (oldest first)", i, c.CommandID, ids[i])
		}
	}
	// Sending one frees a slot.
	if _, err := r.StartAsyncCommand(ctx, ids[0], time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateAsyncCommand(ctx, "proj", "nb_n1", NewAsyncCommand{Paras: json.RawMessage(`{}`)}); err != nil {
		t.Fatalf("after one left PENDING: %v", err)
	}
	l, err := r.ListAsyncCommands(ctx, "proj", "nb_n1", AsyncCommandFilter{Status: AsyncSent}, Page{Limit: 10})
	if err != nil || l.Count != 1 || len(l.Commands) != 1 || l.Commands[0].CommandID != ids[0] {
		t.Fatalf("list SENT: %+v %v", l, err)
	}
	all, err := r.ListAsyncCommands(ctx, "proj", "nb_n1", AsyncCommandFilter{}, Page{Limit: 5})
	if err != nil || all.Count != MaxPendingAsyncCommands+1 || len(all.Commands) != 5 {
		t.Fatalf("list all: count %d len %d %v", all.Count, len(all.Commands), err)
	}
	next, err := r.ListAsyncCommands(ctx, "proj", "nb_n1", AsyncCommandFilter{}, Page{Limit: 5, Marker: all.Marker})
	if err != nil || len(next.Commands) != 5 || next.Commands[0].Seq >= all.Commands[4].Seq {
		t.Fatalf("next page does not continue after the marker: %+v %v", next, err)
	}
}

func TestAsyncCommandExpiryAndTimeoutSweep(t *testing.T) {
	r, clock := newAsyncFixture(t)
	ctx := context.Background()
	short, err := r.CreateAsyncCommand(ctx, "proj", "nb_n1", NewAsyncCommand{Paras: json.RawMessage(`{}`), ExpireTime: 5})
	if err != nil {
		t.Fatal(err)
	}
	long, err := r.CreateAsyncCommand(ctx, "proj", "nb_n1", NewAsyncCommand{Paras: json.RawMessage(`{}`), ExpireTime: 60})
	if err != nil {
		t.Fatal(err)
	}
	inflight, err := r.CreateAsyncCommand(ctx, "proj", "nb_n1", NewAsyncCommand{Paras: json.RawMessage(`{}`), ExpireTime: 60})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.StartAsyncCommand(ctx, inflight.CommandID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	clock.Advance(6 * time.Second)
	// Expired but not yet swept: never handed out, and refused if asked.
	p, _ := r.PendingAsyncCommands(ctx, "nb_n1", 10)
	if len(p) != 1 || p[0].CommandID != long.CommandID {
		t.Fatalf("pending after expiry: %v", p)
	}
	if n, err := r.SweepAsyncCommands(ctx); err != nil || n != 1 {
		t.Fatalf("sweep at 6s: %d %v", n, err)
	}
	if c, _ := r.AsyncCommand(ctx, "proj", "nb_n1", short.CommandID); c.Status != AsyncExpired {
		t.Fatalf("short: %s", c.Status)
	}
	if c, _ := r.AsyncCommand(ctx, "proj", "nb_n1", inflight.CommandID); c.Status != AsyncSent {
		t.Fatalf("in flight before its timeout: %s", c.Status)
	}
	// The adapter died with the command in flight: the sweep times it out
	// once the answer time and the grace have passed.
	clock.Advance(10*time.Second + asyncTimeoutGrace)
	if n, err := r.SweepAsyncCommands(ctx); err != nil || n != 1 {
		t.Fatalf("sweep after timeout: %d %v", n, err)
	}
	if c, _ := r.AsyncCommand(ctx, "proj", "nb_n1", inflight.CommandID); c.Status != AsyncTimeout {
		t.Fatalf("in flight after timeout: %s", c.Status)
	}
	if err := r.FinishAsyncCommand(ctx, inflight.CommandID, AsyncSuccessful, nil); !errors.Is(err, ErrNotSent) {
		t.Fatalf("late result accepted: %v", err)
	}
	// Start refuses (and marks) a command whose expiry passed unswept.
	clock.Advance(time.Minute)
	if _, err := r.StartAsyncCommand(ctx, long.CommandID, time.Second); !errors.Is(err, ErrNotPending) {
		t.Fatalf("start of expired: %v", err)
	}
	if c, _ := r.AsyncCommand(ctx, "proj", "nb_n1", long.CommandID); c.Status != AsyncExpired {
		t.Fatalf("long: %s", c.Status)
	}
	if ok, _ := r.HasPendingAsyncCommands(ctx, "nb_n1"); ok {
		t.Fatal("pending index still has entries")
	}
}

func TestAsyncCommandsDeletedWithDevice(t *testing.T) {
	r, _ := newAsyncFixture(t)
	ctx := context.Background()
	c, err := r.CreateAsyncCommand(ctx, "proj", "nb_n1", NewAsyncCommand{Paras: json.RawMessage(`{}`), ExpireTime: 5})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteDevice(ctx, "proj", "nb_n1"); err != nil {
		t.Fatal(err)
	}
	found := false
	_ = r.view(ctx, func(rd Reader) error {
		for _, k := range [][]byte{asyncKey(c.CommandID), asyncPendingKey("nb_n1", c.Seq), asyncDeviceKey("nb_n1", c.Seq), asyncDeadlineKey(c.Deadline, c.CommandID), asyncCountKey("nb_n1")} {
			if _, err := rd.Get(k); err == nil {
				found = true
			}
		}
		return nil
	})
	if found {
		t.Fatal("command keys survive the device")
	}
}

// scanCounter is a kv.Store that counts the scans of a device's pending
// commands.
type scanCounter struct {
	kv.Store
	scans atomic.Int64
}

func (s *scanCounter) View(ctx context.Context, fn func(Reader) error) error {
	return s.Store.View(ctx, func(rd Reader) error { return fn(countingReader{rd, s}) })
}

type countingReader struct {
	Reader
	s *scanCounter
}

func (c countingReader) Scan(prefix, from []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	if bytes.HasPrefix(prefix, []byte("ap\x00")) {
		c.s.scans.Add(1)
	}
	return c.Reader.Scan(prefix, from, reverse, fn)
}

// The look for a device's pending commands at each registration reads the
// store only for devices that may have some; a pending command is never
// missed, also after a restart.
func TestPendingCommandsLookSkipsDevicesWithout(t *testing.T) {
	base, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: Queues()})
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	s := &scanCounter{Store: base}
	open := func() *Registry {
		r, err := New(Options{Store: s, MasterKey: bytes.Repeat([]byte{7}, 32)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	r := open()
	mustProduct(t, r, "proj", "nb", "CoAP")
	ctx := context.Background()
	for _, n := range []string{"n1", "n2"} {
		if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: n, ProductID: "nb"}); err != nil {
			t.Fatal(err)
		}
	}
	pending := func(r *Registry, dev string, want int, wantScans int64) {
		t.Helper()
		before := s.scans.Load()
		got, err := r.PendingAsyncCommands(ctx, dev, 10)
		if err != nil || len(got) != want {
			t.Fatalf("%s: %d pending (%v), want %d", dev, len(got), err, want)
		}
		if scans := s.scans.Load() - before; scans != wantScans {
			t.Fatalf("%s: %d scans of the store, want %d", dev, scans, wantScans)
		}
	}
	pending(r, "nb_n1", 0, 0) // never had a command: no store read
	c, err := r.CreateAsyncCommand(ctx, "proj", "nb_n1", NewAsyncCommand{Paras: json.RawMessage(`{"path":"/3/0/0"}`)})
	if err != nil {
		t.Fatal(err)
	}
	pending(r, "nb_n1", 1, 1)
	pending(r, "nb_n2", 0, 0)

	// After a restart the command is still found.
	r.Close()
	r = open()
	pending(r, "nb_n1", 1, 1)
	pending(r, "nb_n2", 0, 0)

	// Once it is sent the next look learns from the device's #a record
	// that none is pending, without scanning, and forgets the device.
	if _, err := r.StartAsyncCommand(ctx, c.CommandID, time.Minute); err != nil {
		t.Fatal(err)
	}
	pending(r, "nb_n1", 0, 0)
	if _, may := r.pending.may("nb_n1"); may {
		t.Fatal("a look that found no pending command kept the device in the hint")
	}
	// A new command marks the device again.
	if _, err := r.CreateAsyncCommand(ctx, "proj", "nb_n1", NewAsyncCommand{Paras: json.RawMessage(`{"path":"/3/0/1"}`)}); err != nil {
		t.Fatal(err)
	}
	pending(r, "nb_n1", 1, 1)
}

// A look that finds nothing does not forget a device marked while it
// looked (a command created meanwhile).
func TestPendingHintKeepsMarkMadeDuringLook(t *testing.T) {
	h := newPendingHint()
	h.mark("d")
	g, ok := h.may("d")
	if !ok {
		t.Fatal("marked device not reported")
	}
	h.mark("d") // a command committed while the look ran
	h.clear("d", g)
	if _, ok := h.may("d"); !ok {
		t.Fatal("a mark made during the look was cleared")
	}
	g, _ = h.may("d")
	h.clear("d", g)
	if _, ok := h.may("d"); ok {
		t.Fatal("mark not cleared after a look that found nothing")
	}
	for k, want := range map[string]string{"ap\x00dev1\x00000001": "dev1", "a\x00cmd": "", "al\x00dev\x00001": "", "ap\x00nosep": ""} {
		if dev, _ := pendingKeyDevice(k); dev != want {
			t.Errorf("pendingKeyDevice(%q) = %q, want %q", k, dev, want)
		}
	}
}
