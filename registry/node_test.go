package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// testBus is an in-process Invalidator shared by the registries of one
// test, as the cluster's bus is by its nodes: a node's publication
// reaches every other node's subscription at once.
type testBus struct {
	mu    sync.Mutex
	subs  map[int]func([]string)
	hints map[int]func([]string) // the nodes' event-hint subscriptions
	nodes map[int]*busNode
	n     int
}

type busNode struct {
	bus  *testBus
	id   int
	deaf atomic.Bool // drops what others publish (a node cut off the bus)
}

func (b *testBus) node() *busNode {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	n := &busNode{bus: b, id: b.n}
	if b.nodes == nil {
		b.nodes = map[int]*busNode{}
	}
	b.nodes[n.id] = n
	return n
}

func (n *busNode) Publish(keys []string) {
	n.bus.mu.Lock()
	defer n.bus.mu.Unlock()
	for id, fn := range n.bus.subs {
		if id != n.id && !n.bus.nodes[id].deaf.Load() {
			fn(keys)
		}
	}
}

func (n *busNode) Subscribe(fn func([]string)) {
	n.bus.mu.Lock()
	defer n.bus.mu.Unlock()
	if n.bus.subs == nil {
		n.bus.subs = map[int]func([]string){}
	}
	n.bus.subs[n.id] = fn
}

func (n *busNode) HintEvents(projects []string) {
	n.bus.mu.Lock()
	defer n.bus.mu.Unlock()
	for id, fn := range n.bus.hints {
		if id != n.id && !n.bus.nodes[id].deaf.Load() {
			fn(projects)
		}
	}
}

func (n *busNode) SubscribeEventHints(fn func([]string)) {
	n.bus.mu.Lock()
	defer n.bus.mu.Unlock()
	if n.bus.hints == nil {
		n.bus.hints = map[int]func([]string){}
	}
	n.bus.hints[n.id] = fn
}

// testPresence is a Presence shared by the nodes of one test: each node's
// view records sessions as its own.
type testPresence struct {
	mu   sync.Mutex
	m    map[string]LiveSession
	next atomic.Uint64
}

type presenceView struct {
	p    *testPresence
	node string
}

func (v presenceView) Connect(_ context.Context, id string, at time.Time) (Session, LiveSession, bool, error) {
	s := Session(v.p.next.Add(1))
	v.p.mu.Lock()
	prev, was := v.p.m[id]
	v.p.m[id] = LiveSession{Session: s, Node: v.node, Since: at}
	v.p.mu.Unlock()
	return s, prev, was, nil
}

func (v presenceView) Disconnect(_ context.Context, id string, s Session) (bool, bool, time.Time, error) {
	v.p.mu.Lock()
	defer v.p.mu.Unlock()
	cur, ok := v.p.m[id]
	if !ok {
		return false, false, time.Time{}, nil
	}
	if cur.Session != s {
		return false, true, time.Time{}, nil
	}
	delete(v.p.m, id)
	return true, false, cur.Since, nil
}

func (v presenceView) Drop(_ context.Context, id string) error {
	v.p.mu.Lock()
	delete(v.p.m, id)
	v.p.mu.Unlock()
	return nil
}

func (v presenceView) Lookup(_ context.Context, id string) (LiveSession, bool, error) {
	v.p.mu.Lock()
	defer v.p.mu.Unlock()
	s, ok := v.p.m[id]
	return s, ok, nil
}

func (v presenceView) Online() int { v.p.mu.Lock(); defer v.p.mu.Unlock(); return len(v.p.m) }

// twoNodes starts two registries, "node-a" and "node-b", on one store,
// one bus and one presence, each with a lease on the store.
func twoNodes(t *testing.T, clock *fakeClock) (a, b *Registry, store kv.Store) {
	t.Helper()
	pres := &testPresence{m: map[string]LiveSession{}}
	return openNodes(t, clock, func(node string, o *Options) { o.Presence = presenceView{pres, node} })
}

// openNodes starts two registries, "node-a" and "node-b", on one
// in-memory store and one test bus, each with a lease on the store; set
// adds what else the test's nodes share.
func openNodes(t *testing.T, clock *fakeClock, set func(node string, o *Options)) (a, b *Registry, store kv.Store) {
	t.Helper()
	s, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: Queues()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	bus := &testBus{}
	open := func(node string) *Registry {
		bn := bus.node()
		o := Options{Store: s, MasterKey: bytes.Repeat([]byte{7}, 32), Node: node,
			Invalidator: bn, EventHints: bn, SweepInterval: time.Second}
		if clock != nil {
			o.Now = clock.Now
		}
		o.Lease = NewStoreLease(s, node, o.Now)
		set(node, &o)
		r, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	return open("node-a"), open("node-b"), s
}

// A change made through one node is seen by the other's hot-path lookup
// (the cached one) at once: freezing, a secret reset, a deletion.
func TestTwoNodesSeeEachOthersWrites(t *testing.T) {
	a, b, _ := twoNodes(t, nil)
	ctx := context.Background()
	mustProduct(t, a, "proj", "prod", "MQTT")
	d, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	// b caches the device through its lookups.
	for range 2 {
		if got, err := b.DeviceByProductNode(ctx, "prod", "n1"); err != nil || got.Frozen {
			t.Fatalf("b: %+v %v", got, err)
		}
	}
	if _, _, ok := b.cache.get(deviceKey(d.DeviceID)); !ok {
		t.Fatal("b did not cache the device: the test would prove nothing")
	}

	if err := a.SetFrozen(ctx, "proj", d.DeviceID, true); err != nil {
		t.Fatal(err)
	}
	if got, err := b.DeviceByProductNode(ctx, "prod", "n1"); err != nil || !got.Frozen {
		t.Fatalf("b after a froze the device: frozen=%v %v", got != nil && got.Frozen, err)
	}
	if err := b.SetFrozen(ctx, "proj", d.DeviceID, false); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Device(ctx, d.DeviceID); err != nil || got.Frozen {
		t.Fatalf("a after b unfroze the device: %+v %v", got, err)
	}

	secret, err := a.ResetSecret(ctx, "proj", d.DeviceID, Primary, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Device(ctx, d.DeviceID); err != nil || got.Auth.Secret != secret {
		t.Fatalf("b after a reset the secret: %v (secret changed: %v)", err, got != nil && got.Auth.Secret == secret)
	}

	if err := a.DeleteDevice(ctx, "proj", d.DeviceID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.DeviceByProductNode(ctx, "prod", "n1"); err == nil {
		t.Fatal("b still finds the device a deleted")
	}
}

// A session held through one node shows the device online through the
// other; the other node's late disconnect of an older session does not
// take it offline.
func TestTwoNodesShareEachOthersPresence(t *testing.T) {
	a, b, _ := twoNodes(t, nil)
	ctx := context.Background()
	mustProduct(t, a, "proj", "prod", "MQTT")
	d, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	old, err := b.Connected(ctx, d.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Connected(ctx, d.DeviceID); err != nil { // the device moved to a
		t.Fatal(err)
	}
	if superseded := b.Disconnected(d.DeviceID, old); !superseded {
		t.Fatal("b's old session was not reported superseded")
	}
	got, err := b.Device(ctx, d.DeviceID)
	if err != nil || got.Status != StatusOnline {
		t.Fatalf("b sees the device %q (%v), want ONLINE", got.Status, err)
	}
	if s, ok, _ := b.presence.Lookup(ctx, d.DeviceID); !ok || s.Node != "node-a" {
		t.Fatalf("b sees the session held by %q, want node-a", s.Node)
	}
	if n := b.Online(); n != 1 {
		t.Fatalf("b counts %d online", n)
	}
}

// Ids from two nodes generated at the same time never collide.
func TestTwoNodesIDsNeverCollide(t *testing.T) {
	now := time.Now()
	gens := []IDGenerator{NewNodeIDs("node-a", now), NewNodeIDs("node-b", now)}
	const each = 500_000
	out := make([][]string, len(gens))
	var wg sync.WaitGroup
	for i, g := range gens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := make([]string, each)
			for j := range ids {
				ids[j] = g.Next(now)
			}
			out[i] = ids
		}()
	}
	wg.Wait()
	seen := make(map[string]struct{}, 2*each)
	for _, ids := range out {
		for _, id := range ids {
			if _, dup := seen[id]; dup {
				t.Fatalf("id %s generated twice", id)
			}
			seen[id] = struct{}{}
		}
	}
	// Within a node, ids of one second increase.
	for _, ids := range out {
		for j := 1; j < len(ids); j++ {
			if ids[j] <= ids[j-1] {
				t.Fatalf("ids %s then %s", ids[j-1], ids[j])
			}
		}
	}
}

// kickCounter counts the deletions by the expiry sweep a node reports.
type kickCounter struct {
	mu  sync.Mutex
	ids map[string]int
}

func (k *kickCounter) Kick(id, reason string) {
	if reason != "registration timeout" {
		return
	}
	k.mu.Lock()
	k.ids[id]++
	k.mu.Unlock()
}

// The expiry sweep runs on the node holding the lease, and deletes each
// expired device once; when the holder stops, the other takes over once
// the lease has expired.
func TestTwoNodesSweepUnderOneLease(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	a, b, _ := twoNodes(t, clock)
	ctx := context.Background()
	mustProduct(t, a, "proj", "prod", "MQTT")
	kicks := []*kickCounter{{ids: map[string]int{}}, {ids: map[string]int{}}}
	a.AddKicker(kicks[0])
	b.AddKicker(kicks[1])
	const n = 100
	for i := range n {
		if _, err := b.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: fmt.Sprint("n", i), Auth: AuthInfo{Timeout: 60}}); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(2 * time.Minute)
	// Both nodes run their periodic work at once, several rounds.
	var swept [2]atomic.Int32
	var wg sync.WaitGroup
	for i, r := range []*Registry{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if r.housekeep(ctx) {
					swept[i].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if sa, sb := swept[0].Load(), swept[1].Load(); (sa == 0) == (sb == 0) {
		t.Fatalf("rounds swept by a: %d, by b: %d; want one node only", sa, sb)
	}
	total := 0
	for _, k := range kicks {
		for id, c := range k.ids {
			if c != 1 {
				t.Errorf("%s deleted %d times", id, c)
			}
			total++
		}
	}
	if total != n || (len(kicks[0].ids) != 0) == (len(kicks[1].ids) != 0) {
		t.Fatalf("deleted by a: %d, by b: %d; want %d by one node", len(kicks[0].ids), len(kicks[1].ids), n)
	}
	holder, other := a, b
	if swept[1].Load() > 0 {
		holder, other = b, a
	}
	// The holder stops; the other takes over once the lease has expired.
	holder.Close()
	if other.housekeep(ctx) {
		t.Fatal("the other node swept while the lease was live")
	}
	clock.Advance(4 * time.Second)
	if !other.housekeep(ctx) {
		t.Fatal("the other node did not take over the expired lease")
	}
}

// conflicting fails every other Update with a conflict, writing nothing,
// as a shared engine does when another node's transaction won.
type conflicting struct {
	kv.Store
	n, conflicts atomic.Int64
}

func (c *conflicting) Update(ctx context.Context, fn func(kv.Txn) error) error {
	if c.n.Add(1)%2 == 1 {
		c.conflicts.Add(1)
		return kv.ErrConflict
	}
	return c.Store.Update(ctx, fn)
}

// A write that loses a conflict is run again and applied once.
func TestWritesRetryConflicts(t *testing.T) {
	var c *conflicting
	r, _ := newTestRegistryOn(t, nil, func(s kv.Store) kv.Store { c = &conflicting{Store: s}; return c })
	ctx := context.Background()
	mustProduct(t, r, "proj", "prod", "MQTT")
	for i := range 5 {
		if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: fmt.Sprint("n", i)}); err != nil {
			t.Fatal(err)
		}
	}
	l, err := r.ListDevices(ctx, "proj", DeviceFilter{}, Page{Limit: 10})
	if err != nil || l.Count != 5 || len(l.Devices) != 5 {
		t.Fatalf("after retried creates: count %d, %d listed (%v)", l.Count, len(l.Devices), err)
	}
	if c.conflicts.Load() < 6 {
		t.Fatalf("only %d conflicts were reported", c.conflicts.Load())
	}
}

// lostOutcome commits every Update but reports its outcome unknown, as an
// engine does that lost its database during COMMIT: no OnCommit function
// runs.
type lostOutcome struct {
	kv.Store
	on atomic.Bool
}

func (l *lostOutcome) Update(ctx context.Context, fn func(kv.Txn) error) error {
	if !l.on.Load() {
		return l.Store.Update(ctx, fn)
	}
	err := l.Store.Update(ctx, func(t kv.Txn) error { return fn(hooklessTxn{t}) })
	if err != nil {
		return err
	}
	return fmt.Errorf("test engine: %w", kv.ErrOutcomeUnknown)
}

type hooklessTxn struct{ kv.Txn }

func (hooklessTxn) OnCommit(func()) {}

// A write whose outcome the engine could not learn may have committed: the
// cache forgets what it changed, so the next read goes to the store.
func TestUnknownOutcomeInvalidatesCache(t *testing.T) {
	var l *lostOutcome
	r, _ := newTestRegistryOn(t, nil, func(s kv.Store) kv.Store { l = &lostOutcome{Store: s}; return l })
	ctx := context.Background()
	mustProduct(t, r, "proj", "prod", "MQTT")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Device(ctx, d.DeviceID); err != nil || got.Frozen {
		t.Fatalf("%+v %v", got, err)
	}
	l.on.Store(true)
	if err := r.SetFrozen(ctx, "proj", d.DeviceID, true); !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("freeze with a lost outcome: %v", err)
	}
	l.on.Store(false)
	if got, err := r.Device(ctx, d.DeviceID); err != nil || !got.Frozen {
		t.Fatalf("after a freeze that committed with its outcome lost, the device reads frozen=%v (%v)", got != nil && got.Frozen, err)
	}
}

// A nil notice (the bus lost some) drops everything cached: a change
// whose notice was lost is seen at once after it.
func TestLostNoticesDropTheCache(t *testing.T) {
	a, b, _ := twoNodes(t, nil)
	ctx := context.Background()
	mustProduct(t, a, "proj", "m", "MQTT")
	if _, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "d", ProductID: "m"}); err != nil {
		t.Fatal(err)
	}
	if d, err := b.DeviceByProductNode(ctx, "m", "d"); err != nil || d.Frozen {
		t.Fatalf("b's first lookup: %v %v", d, err)
	}
	b.DeviceByProductNode(ctx, "m", "d") // cached
	b.inval.(*busNode).deaf.Store(true)  // b misses the freeze's notice
	if err := a.SetFrozen(ctx, "proj", "m_d", true); err != nil {
		t.Fatal(err)
	}
	if d, _ := b.DeviceByProductNode(ctx, "m", "d"); d.Frozen {
		t.Fatal("the test bus did not drop the notice")
	}
	b.inval.(*busNode).deaf.Store(false)
	b.invalidated(nil)
	if d, err := b.DeviceByProductNode(ctx, "m", "d"); err != nil || !d.Frozen {
		t.Fatalf("after the bus came back: %+v %v, want the frozen record", d, err)
	}
}
