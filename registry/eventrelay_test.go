package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/pgkv"
	"github.com/iotgate/iotgate/registry/kv/pgkv/pgtest"
)

// relayEngines are the engines the relay's tests run on: Badger (one
// store the nodes share) and PostgreSQL (a store per node on one
// database, as the nodes of a cluster have).
var relayEngines = []struct {
	name  string
	store func(t *testing.T) func() kv.Store // the store of each node
}{
	{"badger", sharedMem},
	{"postgres", func(t *testing.T) func() kv.Store {
		srv := pgtest.Start(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		url, err := srv.Database(ctx, t.Name())
		if err != nil {
			t.Fatal(err)
		}
		return func() kv.Store {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := pgkv.Open(ctx, pgkv.Options{URL: url})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	}},
}

// sharedMem is one in-memory Badger store for every node.
func sharedMem(t *testing.T) func() kv.Store {
	s := memStore(t)
	return func() kv.Store { return s }
}

// clusterOf opens n registries named node-0... on the stores store
// returns, sharing a test bus for invalidations and event hints, each
// with a lease on its store; wrap (nil: none) wraps node i's store.
func clusterOf(t *testing.T, n int, store func() kv.Store, clock *fakeClock, wrap func(i int, s kv.Store) kv.Store) []*Registry {
	t.Helper()
	bus := &testBus{}
	out := make([]*Registry, n)
	for i := range out {
		s := store()
		if wrap != nil {
			s = wrap(i, s)
		}
		bn := bus.node()
		node := fmt.Sprint("node-", i)
		o := Options{Store: s, MasterKey: bytes.Repeat([]byte{7}, 32), Node: node,
			Invalidator: bn, EventHints: bn, SweepInterval: time.Second}
		if clock != nil {
			o.Now = clock.Now
		}
		o.Lease = NewStoreLease(s, node, o.Now)
		r, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		out[i] = r
	}
	return out
}

// streamCheck reads a project's stream as a forwarding worker does, from
// the last position it saw, and checks every event against the stream's
// invariants: positions strictly increase, each event is read once, and
// each device's seqs run on from the last one read (1 again after its
// delete event: a device created again under its id).
type streamCheck struct {
	project  string
	cursor   uint64
	seqs     map[string]uint64 // device: last seq read
	deleted  map[string]bool   // device: its last event read was its delete
	ids      map[string]bool
	messages map[string][]string // device: its uplinks' message ids, in stream order
	order    []string            // every uplink's message id, in stream order
	count    int
}

func newStreamCheck(project string) *streamCheck {
	return &streamCheck{project: project, seqs: map[string]uint64{}, deleted: map[string]bool{},
		ids: map[string]bool{}, messages: map[string][]string{}}
}

// read reads what the stream holds after the cursor; it returns an
// error for the first event that breaks an invariant.
func (c *streamCheck) read(ctx context.Context, r *Registry) error {
	for {
		p, err := r.Events(ctx, c.project, c.cursor, MaxEventsPage)
		if err != nil {
			return err
		}
		if len(p.Events) == 0 {
			return nil
		}
		for _, ev := range p.Events {
			if ev.Position <= c.cursor {
				return fmt.Errorf("position %d after %d", ev.Position, c.cursor)
			}
			c.cursor = ev.Position
			if c.ids[ev.ID] {
				return fmt.Errorf("event %s (position %d) read twice", ev.ID, ev.Position)
			}
			c.ids[ev.ID] = true
			dev := ev.Header.DeviceID
			want := c.seqs[dev] + 1
			if c.deleted[dev] {
				want = createSeq
			}
			if ev.Seq != want {
				return fmt.Errorf("%s's seq %d at position %d, want %d", dev, ev.Seq, ev.Position, want)
			}
			c.seqs[dev] = ev.Seq
			c.deleted[dev] = ev.Resource == ResourceDevice && ev.Event == EventDelete
			if ev.Resource == ResourceDeviceMessage {
				var body messageEventBody
				if err := json.Unmarshal(ev.Body, &body); err != nil {
					return err
				}
				c.messages[dev] = append(c.messages[dev], body.ID)
				c.order = append(c.order, body.ID)
			}
			c.count++
		}
	}
}

// readAll reads until the stream holds want events, or fails the test.
func (c *streamCheck) readAll(t *testing.T, r *Registry, want int) {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if err := c.read(ctx, r); err != nil {
			t.Fatal(err)
		}
		if c.count >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream holds %d events, want %d (%d in the outbox)", c.count, want, outboxLen(t, r))
		}
	}
	if c.count != want {
		t.Fatalf("the stream holds %d events, want %d", c.count, want)
	}
}

// On a cluster a write that records an event stores it in the outbox
// and leaves the stream and the position counter alone; the relay gives
// it its position.
func TestClusterWritesLeaveThePositionToTheRelay(t *testing.T) {
	rs := clusterOf(t, 2, sharedMem(t), nil, nil)
	a := rs[0]
	ctx := context.Background()
	mustProduct(t, a, "proj", "prod", "MQTT")
	before, err := a.lastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.AddMessage(ctx, d.DeviceID, Message{MessageID: "m1", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	after, err := a.lastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Events(ctx, "proj", 0, MaxEventsPage)
	if err != nil {
		t.Fatal(err)
	}
	if after != before || len(p.Events) != 0 || outboxLen(t, a) != 2 {
		t.Fatalf("before the relay: position %d -> %d, %d events in the stream, %d in the outbox; want the position unchanged, 0 and 2",
			before, after, len(p.Events), outboxLen(t, a))
	}
	if n, err := a.RelayEvents(ctx); err != nil || n != 2 {
		t.Fatalf("relayed %d, %v; want 2", n, err)
	}
	c := newStreamCheck("proj")
	c.readAll(t, a, 2)
	if outboxLen(t, a) != 0 || c.cursor != before+2 {
		t.Fatalf("after the relay: %d in the outbox, last position %d; want 0 and %d", outboxLen(t, a), c.cursor, before+2)
	}
}

// Events written through three nodes at once, one device's writes
// alternating between the nodes, all reach the stream exactly once, each
// device's in seq order (the alternating device's in the order written),
// positions strictly increasing, while every node runs its relay loop
// (one holds the lease) and a reader reads the stream as relays commit.
func TestRelayDeliversEveryEventOnceInOrder(t *testing.T) {
	for _, engine := range relayEngines {
		t.Run(engine.name, func(t *testing.T) {
			rs := clusterOf(t, 3, engine.store(t), nil, nil)
			startRelays(t, rs...)
			ctx := context.Background()
			mustProduct(t, rs[0], "proj", "prod", "MQTT")
			const devices, each, alternating = 6, 40, 60
			for i := range devices + 1 {
				if _, err := rs[i%3].CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: fmt.Sprint("n", i)}); err != nil {
					t.Fatal(err)
				}
			}
			alt := fmt.Sprint("prod_n", devices)
			// The reader, on the node that is not the first writer.
			c := newStreamCheck("proj")
			stop := make(chan struct{})
			readerDone := make(chan error, 1)
			go func() {
				for {
					ch := rs[1].EventsCommitted("proj")
					if err := c.read(ctx, rs[1]); err != nil {
						readerDone <- err
						return
					}
					select {
					case <-stop:
						readerDone <- nil
						return
					case <-ch:
					case <-time.After(100 * time.Millisecond):
					}
				}
			}()
			var wg sync.WaitGroup
			errs := make(chan error, devices+1)
			for i := range devices {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range each {
						m := Message{MessageID: fmt.Sprint("m", j), Payload: []byte("x")}
						if err := rs[(i+j)%3].AddMessage(ctx, fmt.Sprint("prod_n", i), m); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			var written []string
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range alternating {
					id := fmt.Sprintf("alt%d-node-%d", j, j%3)
					if err := rs[j%3].AddMessage(ctx, alt, Message{MessageID: id, Payload: []byte("x")}); err != nil {
						errs <- err
						return
					}
					written = append(written, id)
				}
			}()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			waitOutboxEmpty(t, rs[0])
			close(stop)
			if err := <-readerDone; err != nil {
				t.Fatal(err)
			}
			c.readAll(t, rs[1], devices+1+devices*each+alternating)
			if got := c.messages[alt]; !slicesEqual(got, written) {
				t.Fatalf("the alternating device's uplinks in stream order: %v, written %v", got, written)
			}
			// Every node reads the same stream.
			for _, r := range []*Registry{rs[0], rs[2]} {
				other := newStreamCheck("proj")
				other.readAll(t, r, c.count)
				if other.cursor != c.cursor {
					t.Fatalf("%s's stream ends at %d, node-1's at %d", r.node, other.cursor, c.cursor)
				}
			}
		})
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A relay batch cut inside a device's entries relays that device's
// lowest seqs and the rest in the next batch, which starts at that
// device: no entry waits for another, none is relayed before a lower seq
// of its device.
func TestRelayBatchCutsADeviceSequence(t *testing.T) {
	rs := clusterOf(t, 2, sharedMem(t), nil, nil)
	a, b := rs[0], rs[1]
	ctx := context.Background()
	mustProduct(t, a, "proj", "prod", "MQTT")
	for _, n := range []string{"x", "y"} {
		if _, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: n}); err != nil {
			t.Fatal(err)
		}
	}
	c := newStreamCheck("proj")
	if _, err := a.RelayEvents(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.read(ctx, a); err != nil || c.count != 2 {
		t.Fatalf("%d creates read, %v", c.count, err)
	}
	add := func(dev string, from ...int) {
		t.Helper()
		for _, j := range from {
			r := []*Registry{a, b}[j%2]
			if err := r.AddMessage(ctx, "prod_"+dev, Message{MessageID: fmt.Sprint(dev, j), Payload: []byte("x")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	a.relay.batch = 3
	batch := func(want ...string) {
		t.Helper()
		before := len(c.order)
		n, _, err := a.relayEvents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.read(ctx, a); err != nil {
			t.Fatal(err)
		}
		if got := c.order[before:]; n != len(want) || !slicesEqual(got, want) {
			t.Fatalf("the batch moved %d: %v, want %v", n, got, want)
		}
	}
	add("x", 2, 3, 4, 5) // x's seqs 2-5, written through a and b in turn: outbox x2-x5 y2 y3
	add("y", 2, 3)
	batch("x2", "x3", "x4") // cut inside x
	if got := c.messages["prod_x"]; !slicesEqual(got, []string{"x2", "x3", "x4"}) {
		t.Fatalf("after the cut batch: x's uplinks %v", got)
	}
	add("x", 6)
	batch("x5", "x6", "y2") // resumes at x; cut inside y
	batch("y3")             // resumes at y, then from the start: nothing left
	if got := c.messages["prod_x"]; !slicesEqual(got, []string{"x2", "x3", "x4", "x5", "x6"}) {
		t.Fatalf("x's uplinks in stream order: %v", got)
	}
	if got := c.messages["prod_y"]; !slicesEqual(got, []string{"y2", "y3"}) {
		t.Fatalf("y's uplinks in stream order: %v", got)
	}
	if n := outboxLen(t, a); n != 0 {
		t.Fatalf("%d entries left in the outbox", n)
	}
}

// Any schedule of uplinks through either node, deletes, creates under a
// deleted device's id and small relay batches, run on either node, puts
// every event in the stream once and each device's in seq order (a
// created-again device's create after its predecessor's delete).
func TestRelayRandomSchedules(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		rs := clusterOf(t, 2, sharedMem(t), nil, nil)
		ctx := context.Background()
		mustProduct(t, rs[0], "proj", "prod", "MQTT")
		for _, r := range rs {
			r.relay.batch = 1 + rng.IntN(5)
		}
		c := newStreamCheck("proj")
		exists := map[string]bool{}
		written := 0
		for step := range 300 {
			r := rs[rng.IntN(2)]
			dev := fmt.Sprint("d", rng.IntN(4))
			id := "prod_" + dev
			switch k := rng.IntN(10); {
			case k < 2:
				if _, _, err := r.relayEvents(ctx); err != nil {
					t.Fatal(err)
				}
				if err := c.read(ctx, r); err != nil {
					t.Fatalf("seed %d step %d: %v", seed, step, err)
				}
			case !exists[id]:
				if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: dev}); err != nil {
					t.Fatal(err)
				}
				exists[id] = true
				written++
			case k < 3:
				if err := r.DeleteDevice(ctx, "proj", id); err != nil {
					t.Fatal(err)
				}
				exists[id] = false
				written++
			default:
				if err := r.AddMessage(ctx, id, Message{MessageID: fmt.Sprint("s", step), Payload: []byte("x")}); err != nil {
					t.Fatal(err)
				}
				written++
			}
		}
		if _, err := rs[1].RelayEvents(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.read(ctx, rs[0]); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if c.count != written {
			t.Fatalf("seed %d: the stream holds %d events, %d were written", seed, c.count, written)
		}
	}
}

// killableStore fails the Update it is armed for after that Update has
// staged a few writes: a relay killed in the middle of its batch.
type killableStore struct {
	kv.Store
	armed atomic.Bool
}

var errKilled = errors.New("killed mid-batch")

type killableTxn struct {
	kv.Txn
	sets int
}

func (t *killableTxn) Set(k, v []byte) error {
	if t.sets++; t.sets > 2 {
		return errKilled
	}
	return t.Txn.Set(k, v)
}

func (s *killableStore) Update(ctx context.Context, fn func(kv.Txn) error) error {
	if !s.armed.Load() {
		return s.Store.Update(ctx, fn)
	}
	return s.Store.Update(ctx, func(t kv.Txn) error { return fn(&killableTxn{Txn: t}) })
}

// The relay's holder killed in the middle of a batch leaves every event
// in the outbox; the other nodes wait for its lease to expire, and the
// one that takes it over relays everything, once and in order.
func TestRelayLeaseTakeoverLosesNothing(t *testing.T) {
	for _, engine := range relayEngines {
		t.Run(engine.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
			var killable *killableStore
			rs := clusterOf(t, 3, engine.store(t), clock, func(i int, s kv.Store) kv.Store {
				if i == 0 {
					killable = &killableStore{Store: s}
					return killable
				}
				return s
			})
			a := rs[0]
			ctx := context.Background()
			if held, err := a.lease.Hold(ctx, relayLease, 3*a.sweepInt); err != nil || !held {
				t.Fatalf("node-0 holds the relay's lease: %v %v", held, err)
			}
			mustProduct(t, a, "proj", "prod", "MQTT")
			written := 0
			for i := range 6 {
				r := rs[i%3]
				d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: fmt.Sprint("n", i)})
				if err != nil {
					t.Fatal(err)
				}
				for j := range 5 {
					if err := rs[(i+j)%3].AddMessage(ctx, d.DeviceID, Message{MessageID: fmt.Sprint("m", j), Payload: []byte("x")}); err != nil {
						t.Fatal(err)
					}
				}
				written += 6
			}
			// One batch goes through; the next is killed half-way.
			a.relay.batch = 10
			if n, _, err := a.relayEvents(ctx); err != nil || n != 10 {
				t.Fatalf("first batch: %d, %v", n, err)
			}
			killable.armed.Store(true)
			if _, _, err := a.relayEvents(ctx); !errors.Is(err, errKilled) {
				t.Fatalf("the killed batch: %v", err)
			}
			if n := outboxLen(t, a); n != written-10 {
				t.Fatalf("after the killed batch %d events in the outbox, want %d", n, written-10)
			}
			// node-0 is gone; the others' relays wait for its lease.
			startRelays(t, rs[1], rs[2])
			time.Sleep(300 * time.Millisecond)
			if n := outboxLen(t, a); n != written-10 {
				t.Fatalf("%d events in the outbox while node-0's lease is live, want %d", n, written-10)
			}
			clock.Advance(4 * time.Second) // past the lease's ttl (3 sweep intervals)
			for _, r := range rs[1:] {
				r.relay.poke()
			}
			waitOutboxEmpty(t, rs[1])
			c := newStreamCheck("proj")
			c.readAll(t, rs[2], written)
			var rec leaseRecord
			if err := a.view(ctx, func(rd Reader) error {
				v, err := rd.Get(leaseKey(relayLease))
				if err != nil {
					return err
				}
				return json.Unmarshal(v, &rec)
			}); err != nil {
				t.Fatal(err)
			}
			if rec.Holder == "node-0" {
				t.Fatalf("the relay's lease is still node-0's")
			}
		})
	}
}

// conflictCount counts the transactions of a store that lost a conflict
// (kv.ErrConflict), each of which the registry runs again.
type conflictCount struct {
	kv.Store
	mu     *sync.Mutex
	counts map[string]int // by what the engine said
}

func (s conflictCount) Update(ctx context.Context, fn func(kv.Txn) error) error {
	err := s.Store.Update(ctx, fn)
	what := "committed"
	switch {
	case err == nil:
	case !errors.Is(err, kv.ErrConflict):
		what = "failed"
	case strings.Contains(err.Error(), "concurrent update"):
		what = "row" // two transactions updated one row
	case strings.Contains(err.Error(), "read/write dependencies"):
		what = "ssi" // PostgreSQL's predicate locks (pages of the key index)
	default:
		what = "other conflict"
	}
	if ctx.Value(relayCtx{}) != nil {
		what = "relay " + what
	}
	s.mu.Lock()
	s.counts[what]++
	s.mu.Unlock()
	return err
}

// Event-recording writes of three nodes on one PostgreSQL database touch
// no common row: uplinks of different devices sent through different
// nodes at once do not conflict on one, while the relay moves their
// events into the stream. Before the outbox every such write read and
// rewrote the cluster's position counter: most lost a conflict on it and
// ran again (80 to 370 of these 300 uplinks' transactions, besides the
// predicate-lock conflicts below). What still conflicts is counted, not
// bounded: PostgreSQL's SERIALIZABLE transactions track reads per index
// page, so writes that share no key still conflict when their keys share
// pages (padFamilies keeps families apart, as a store of a deployment's
// size does), and a relay transaction that the node's commit queue
// batches with uplinks takes them along when it loses the counter to
// another node's relay.
func TestClusterEventWritesDoNotConflict(t *testing.T) {
	var mu sync.Mutex
	counts := map[string]int{}
	rs := clusterOf(t, 3, relayEngines[1].store(t), nil, func(_ int, s kv.Store) kv.Store {
		return conflictCount{Store: s, mu: &mu, counts: counts}
	})
	startRelays(t, rs...)
	ctx := context.Background()
	mustProduct(t, rs[0], "proj", "prod", "MQTT")
	const perNode, each = 4, 25
	for i := range 3 * perNode {
		if _, err := rs[i%3].CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: fmt.Sprint("n", i)}); err != nil {
			t.Fatal(err)
		}
	}
	rs[0].RelayEvents(ctx)
	waitOutboxEmpty(t, rs[0])
	padFamilies(t, rs[0].store)
	mu.Lock()
	clear(counts)
	mu.Unlock()
	var wg sync.WaitGroup
	errs := make(chan error, 3*perNode)
	for i := range 3 * perNode {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				if err := rs[i%3].AddMessage(ctx, fmt.Sprint("prod_n", i), Message{MessageID: fmt.Sprint("m", j), Payload: []byte("x")}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitOutboxEmpty(t, rs[0])
	writes := 3 * perNode * each
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d uplinks through 3 nodes; transactions by outcome (the relay's apart): %v", writes, counts)
	if lost := counts["row"]; float64(lost) > 0.03*float64(writes) {
		t.Errorf("%d uplink transactions lost a conflict on a row another transaction updated; uplinks of different devices share none", lost)
	}
	c := newStreamCheck("proj")
	c.readAll(t, rs[1], 3*perNode+writes)
}

// padFamilies writes rows that no write reads between the key families
// an uplink touches, so that each family's keys are on index pages of
// their own, as in a store of a deployment's size (in a test's small
// store, every family shares a page or two with its neighbours, and
// PostgreSQL's predicate locks, which are per index page, see conflicts
// between writes that share no key).
func padFamilies(t *testing.T, s kv.Store) {
	t.Helper()
	for _, fam := range []string{"#", "#a", "#dm", "#e", "#g", "#gm", "#gp", "#p", "#u", "L", "a", "al", "ap", "d", "dh", "dl", "dm", "e", "eh", "ec", "eo", "ep", "es", "f", "l", "m", "n", "nd", "p", "ps", "q", "s", "t", "u", "x"} {
		if err := s.Update(context.Background(), func(txn kv.Txn) error {
			for i := range 400 {
				k := fmt.Appendf([]byte(fam), "\x01pad%04d", i)
				if err := txn.Set(k, bytes.Repeat([]byte{1}, 16)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// A relay whose batch another relay moved between its snapshot and its
// write (two nodes that both believe they hold the lease) finds the
// position counter changed and reads again: nothing is relayed twice.
func TestRelayRacedBatchReadsAgain(t *testing.T) {
	for _, engine := range relayEngines {
		t.Run(engine.name, func(t *testing.T) {
			rs := clusterOf(t, 2, engine.store(t), nil, nil)
			a, b := rs[0], rs[1]
			ctx := context.Background()
			mustProduct(t, a, "proj", "prod", "MQTT")
			d, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: "n"})
			if err != nil {
				t.Fatal(err)
			}
			for j := range 3 {
				if err := b.AddMessage(ctx, d.DeviceID, Message{MessageID: fmt.Sprint("m", j), Payload: []byte("x")}); err != nil {
					t.Fatal(err)
				}
			}
			raced := 0
			a.relay.afterRead = func() {
				if raced++; raced > 1 {
					return
				}
				// b moves a's batch, and one more uplink arrives.
				if n, err := b.RelayEvents(ctx); err != nil || n != 4 {
					t.Errorf("b relayed %d, %v; want 4", n, err)
				}
				if err := b.AddMessage(ctx, d.DeviceID, Message{MessageID: "m3", Payload: []byte("x")}); err != nil {
					t.Error(err)
				}
			}
			if n, err := a.RelayEvents(ctx); err != nil || n != 1 {
				t.Fatalf("a relayed %d, %v; want 1 (the uplink after b's batch)", n, err)
			}
			c := newStreamCheck("proj")
			c.readAll(t, a, 5)
			if got := c.order; !slicesEqual(got, []string{"m0", "m1", "m2", "m3"}) {
				t.Fatalf("uplinks in stream order: %v", got)
			}
		})
	}
}
