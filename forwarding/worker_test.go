package forwarding

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

func testRegistry(t *testing.T) *registry.Registry {
	t.Helper()
	reg, _ := testRegistryStore(t)
	return reg
}

func testRegistryStore(t *testing.T) (*registry.Registry, kv.Store) {
	t.Helper()
	st, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: registry.Queues()})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Options{Store: st, MasterKey: bytes.Repeat([]byte{5}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close(); st.Close() })
	return reg, st
}

// fakeChannel records what it was given and fails as fail says.
type fakeChannel struct {
	// hold, when set, blocks deliveries until it is closed.
	hold atomic.Pointer[chan struct{}]
	mu   sync.Mutex
	fail func(m *Message) error
	got  map[string][]uint64 // device -> seqs delivered, in order
	// projected: payloads are a rule's select, not envelopes; kept in
	// payloads.
	projected bool
	payloads  []string
	calls     int
	last      time.Time
}

func newFake(fail func(*Message) error) *fakeChannel {
	return &fakeChannel{fail: fail, got: make(map[string][]uint64)}
}

func (f *fakeChannel) Deliver(_ context.Context, m *Message) error {
	if h := f.hold.Load(); h != nil {
		<-*h
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		if err := f.fail(m); err != nil {
			return err
		}
	}
	if f.projected {
		f.payloads = append(f.payloads, string(m.Payload))
		f.got[m.DeviceID] = append(f.got[m.DeviceID], m.Seq)
		return nil
	}
	var env envelope
	if err := json.Unmarshal(m.Payload, &env); err != nil || env.RequestID != m.RequestID ||
		env.NotifyData.Header.DeviceID != m.DeviceID {
		return fmt.Errorf("bad envelope %s: %v", m.Payload, err)
	}
	f.got[m.DeviceID] = append(f.got[m.DeviceID], m.Seq)
	f.last = time.Now()
	return nil
}

func (f *fakeChannel) Close() error { return nil }

func (f *fakeChannel) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, s := range f.got {
		n += len(s)
	}
	return n
}

func (f *fakeChannel) seqs(dev string) []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.got[dev]...)
}

// fixture: project p with devices d0..d(n-1) of product "m".
func fixture(t *testing.T, reg *registry.Registry, project string, n int) []string {
	t.Helper()
	ctx := context.Background()
	if _, err := reg.CreateProduct(ctx, registry.Product{ProjectID: project, ProductID: "m" + project, Name: "M",
		DeviceType: "x", ProtocolType: "MQTT"}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range n {
		d, err := reg.CreateDevice(ctx, registry.NewDevice{ProjectID: project, ProductID: "m" + project, NodeID: fmt.Sprintf("d%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.DeviceID)
	}
	return ids
}

func addRule(t *testing.T, reg *registry.Registry, project string, rule registry.RoutingRule) string {
	t.Helper()
	rule.Active = true
	r, err := reg.AddRoutingRule(context.Background(), project, "", rule)
	if err != nil {
		t.Fatal(err)
	}
	return r.ID
}

// addAction adds an action whose channel name is the fake's key.
func addAction(t *testing.T, reg *registry.Registry, project, rule string) string {
	t.Helper()
	a, err := reg.AddRuleAction(context.Background(), project, registry.RuleAction{RuleID: rule,
		Channel: registry.ChannelHTTP, Detail: registry.ChannelDetail{HTTP: &registry.HTTPForwarding{URL: "http://127.0.0.1:9/"}}})
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

func uplinks(t *testing.T, reg *registry.Registry, devs []string, n int) {
	t.Helper()
	for i := range n {
		for _, d := range devs {
			if err := reg.AddMessage(context.Background(), d, registry.Message{Topic: "t", Payload: fmt.Appendf(nil, `{"i":%d}`, i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// startEngine runs an engine whose actions deliver to the fakes, by
// action id.
func startEngine(t *testing.T, reg *registry.Registry, fakes map[string]*fakeChannel, o Options) (stop func()) {
	t.Helper()
	_, stop = runEngine(t, reg, fakes, o)
	return stop
}

// runEngine is startEngine, returning the engine too.
func runEngine(t *testing.T, reg Registry, fakes map[string]*fakeChannel, o Options) (e *Engine, stop func()) {
	t.Helper()
	o.Registry = reg
	o.Openers = map[string]Opener{registry.ChannelHTTP: func(_ context.Context, a *registry.RuleAction) (Channel, error) {
		f := fakes[a.ID]
		if f == nil {
			return nil, errors.New("no fake")
		}
		return f, nil
	}}
	if o.Reload == 0 {
		o.Reload = 20 * time.Millisecond
	}
	if o.Poll == 0 {
		o.Poll = 5 * time.Millisecond
	}
	if o.RetryBase == 0 {
		o.RetryBase = time.Millisecond
	}
	if o.RetryMax == 0 {
		o.RetryMax = 20 * time.Millisecond
	}
	if o.DrainRate == 0 {
		o.DrainRate = 1e6
	}
	ctx, cancel := context.WithCancel(context.Background())
	e = New(o)
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return e, stop
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantInOrder checks a device got seqs from..to, in order, each once.
func wantInOrder(t *testing.T, dev string, got []uint64, from, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%s got %d messages, want %d: %v", dev, len(got), n, got)
	}
	for i, s := range got {
		if s != uint64(from+i) {
			t.Fatalf("%s got seq %d at %d, want %d: %v", dev, s, i, from+i, got)
		}
	}
}

func TestDeliversInDeviceOrderAcrossRetries(t *testing.T) {
	reg := testRegistry(t)
	devs := fixture(t, reg, "p", 5)
	action := addAction(t, reg, "p", addRule(t, reg, "p", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDeviceMessage, Event: registry.EventReport}}))
	// Every message fails twice before it is taken.
	tries := map[string]int{}
	f := newFake(func(m *Message) error {
		tries[m.RequestID]++
		if tries[m.RequestID] <= 2 {
			return errors.New("busy")
		}
		return nil
	})
	startEngine(t, reg, map[string]*fakeChannel{action: f}, Options{Lanes: 3, PageSize: 7})
	uplinks(t, reg, devs, 40)
	waitFor(t, "200 deliveries", 20*time.Second, func() bool { return f.count() == 200 })
	for _, d := range devs {
		// Seq 1 is the device's create event, which the rule's subject
		// leaves out.
		wantInOrder(t, d, f.seqs(d), 2, 40)
	}
	waitFor(t, "the cursor at the stream's end", 5*time.Second, func() bool {
		c, err := reg.EventConsumer(context.Background(), "p", registry.ActionConsumer(action))
		page, _ := reg.Events(context.Background(), "p", c.Cursor, 10)
		return err == nil && len(page.Events) == 0
	})
}

func TestNoAckBeforeDeliveryAndResumeAfterRestart(t *testing.T) {
	reg := testRegistry(t)
	devs := fixture(t, reg, "p", 3)
	action := addAction(t, reg, "p", addRule(t, reg, "p", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDeviceMessage, Event: registry.EventReport}}))
	ctx := context.Background()
	start, err := reg.EventConsumer(ctx, "p", registry.ActionConsumer(action))
	if err != nil {
		t.Fatal(err)
	}
	// devs[0]'s 6th message never goes through: nothing of its page may
	// be acknowledged, whatever the other lanes delivered.
	down := newFake(func(m *Message) error {
		if m.DeviceID == devs[0] && m.Seq == 7 {
			return errors.New("down")
		}
		return nil
	})
	stop := startEngine(t, reg, map[string]*fakeChannel{action: down}, Options{Lanes: 4, PageSize: 1000})
	uplinks(t, reg, devs, 20)
	waitFor(t, "retries", 5*time.Second, func() bool { down.mu.Lock(); defer down.mu.Unlock(); return down.calls > 60 })
	stop()
	c, err := reg.EventConsumer(ctx, "p", registry.ActionConsumer(action))
	if err != nil {
		t.Fatal(err)
	}
	page, err := reg.Events(ctx, "p", c.Cursor, 1000)
	if err != nil {
		t.Fatal(err)
	}
	held := false
	for _, ev := range page.Events {
		held = held || (ev.Header.DeviceID == devs[0] && ev.Seq == 7)
	}
	if !held {
		t.Fatalf("cursor moved from %d to %d, past the undelivered message", start.Cursor, c.Cursor)
	}
	wantInOrder(t, devs[0], down.seqs(devs[0]), 2, 5)

	// Restarted with the destination back, everything arrives: from the
	// acknowledged cursor on, in order; what the first run delivered
	// after it comes again (same seqs, same request ids), nothing is
	// missing.
	up := newFake(nil)
	startEngine(t, reg, map[string]*fakeChannel{action: up}, Options{Lanes: 4})
	waitFor(t, "redelivery", 10*time.Second, func() bool {
		for _, d := range devs {
			if s := up.seqs(d); len(s) == 0 || s[len(s)-1] != 21 {
				return false
			}
		}
		return true
	})
	for _, d := range devs {
		again := up.seqs(d)
		wantInOrder(t, d, again, int(again[0]), len(again))
		before := down.seqs(d)
		if len(before) < int(again[0])-2 {
			t.Fatalf("%s: first run delivered %v, the restart began at %d: a gap", d, before, again[0])
		}
	}
}

func TestFailingActionDoesNotDelayAnother(t *testing.T) {
	reg := testRegistry(t)
	devs := fixture(t, reg, "p", 4)
	rule := addRule(t, reg, "p", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDeviceMessage, Event: registry.EventReport}})
	bad, good := addAction(t, reg, "p", rule), addAction(t, reg, "p", rule)
	down := newFake(func(*Message) error { return errors.New("connection refused") })
	up := newFake(nil)
	startEngine(t, reg, map[string]*fakeChannel{bad: down, good: up}, Options{RetryMax: time.Second})
	uplinks(t, reg, devs, 50)
	waitFor(t, "the healthy action's deliveries", 5*time.Second, func() bool { return up.count() == 200 })
	for _, d := range devs {
		wantInOrder(t, d, up.seqs(d), 2, 50)
	}
	if down.count() != 0 {
		t.Fatalf("the failing destination took %d", down.count())
	}
}

// Snapshot reports each action's deliveries and lag: a healthy action
// that has caught up lags by nothing; one whose destination is down lags
// by the age of the oldest event it holds, and that grows.
func TestSnapshotReportsLag(t *testing.T) {
	reg := testRegistry(t)
	devs := fixture(t, reg, "p", 2)
	rule := addRule(t, reg, "p", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDeviceMessage, Event: registry.EventReport}})
	bad, good := addAction(t, reg, "p", rule), addAction(t, reg, "p", rule)
	down := newFake(func(*Message) error { return errors.New("connection refused") })
	up := newFake(nil)
	e, _ := runEngine(t, reg, map[string]*fakeChannel{bad: down, good: up}, Options{RetryMax: 50 * time.Millisecond})
	uplinks(t, reg, devs, 10)
	byID := func() map[string]ActionStats {
		m := map[string]ActionStats{}
		for _, a := range e.Snapshot(time.Now()) {
			m[a.ActionID] = a
		}
		return m
	}
	waitFor(t, "the healthy action to catch up", 5*time.Second, func() bool {
		a := byID()[good]
		return a.Delivered == 20 && a.Lag == 0 && a.Cursor > 0
	})
	var first time.Duration
	waitFor(t, "the failing action's lag", 5*time.Second, func() bool {
		a := byID()[bad]
		first = a.Lag
		return a.Failures > 0 && a.Lag > 0 && a.Delivered == 0
	})
	time.Sleep(100 * time.Millisecond)
	if a := byID()[bad]; a.Lag <= first {
		t.Fatalf("the failing action's lag went from %v to %v, want it growing", first, a.Lag)
	}
}

func TestRuleSelection(t *testing.T) {
	reg := testRegistry(t)
	ctx := context.Background()
	devs := fixture(t, reg, "p", 2)
	other := fixture(t, reg, "q", 1)
	rule := addRule(t, reg, "p", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDeviceMessage, Event: registry.EventReport},
		Where:   "notify_data.body.content.i >= 3 AND notify_data.header.device_id = '" + devs[1] + "'"})
	all := addRule(t, reg, "p", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDevice, Event: registry.EventCreate}})
	filtered, creates := addAction(t, reg, "p", rule), addAction(t, reg, "p", all)
	// q's rule must never see p's devices, and p's rules never q's.
	qa := addAction(t, reg, "q", addRule(t, reg, "q", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDeviceMessage, Event: registry.EventReport}}))
	ff, fc, fq := newFake(nil), newFake(nil), newFake(nil)
	startEngine(t, reg, map[string]*fakeChannel{filtered: ff, creates: fc, qa: fq}, Options{})
	uplinks(t, reg, append(devs, other...), 6)
	if _, err := reg.CreateDevice(ctx, registry.NewDevice{ProjectID: "p", ProductID: "mp", NodeID: "late"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "filtered deliveries", 5*time.Second, func() bool { return ff.count() == 3 && fc.count() == 1 && fq.count() == 6 })
	if got := ff.seqs(devs[1]); len(got) != 3 || got[0] != 5 {
		t.Errorf("where selected %v of %s, want seqs 5, 6, 7", got, devs[1])
	}
	if got := fc.seqs("mp_late"); len(got) != 1 {
		t.Errorf("create rule got %v", fc.got)
	}
	if len(fq.got) != 1 || len(fq.seqs(other[0])) != 6 {
		t.Errorf("q's rule got %v", fq.got)
	}
	// An inactive rule forwards nothing of what happens meanwhile.
	off := false
	if _, err := reg.UpdateRoutingRule(ctx, "p", all, registry.RuleChange{Active: &off}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreateDevice(ctx, registry.NewDevice{ProjectID: "p", ProductID: "mp", NodeID: "later"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if fc.count() != 1 {
		t.Errorf("inactive rule forwarded: %v", fc.got)
	}
}

// A rule's select shapes what is pushed; its where reads the envelope,
// not the projection.
func TestRuleProjection(t *testing.T) {
	reg := testRegistry(t)
	devs := fixture(t, reg, "p", 1)
	rule := addRule(t, reg, "p", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDeviceMessage, Event: registry.EventReport},
		Select:  "notify_data.header.device_id AS dev, notify_data.body.content.i, 'v1' AS schema",
		Where:   "notify_data.body.content.i >= 2"})
	f := newFake(nil)
	f.projected = true
	startEngine(t, reg, map[string]*fakeChannel{addAction(t, reg, "p", rule): f}, Options{})
	uplinks(t, reg, devs, 4)
	waitFor(t, "projected deliveries", 5*time.Second, func() bool { return f.count() == 2 })
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, want := range []string{
		`{"dev":"` + devs[0] + `","notify_data.body.content.i":2,"schema":"v1"}`,
		`{"dev":"` + devs[0] + `","notify_data.body.content.i":3,"schema":"v1"}`,
	} {
		if f.payloads[i] != want {
			t.Errorf("push %d: %s, want %s", i, f.payloads[i], want)
		}
	}
}

// perMessageBatch takes batches by delivering each message in turn.
type perMessageBatch struct{ *fakeChannel }

func (b perMessageBatch) DeliverBatch(ctx context.Context, msgs []*Message) error {
	for _, m := range msgs {
		if err := b.Deliver(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func TestDrainRateAfterOutage(t *testing.T) {
	t.Run("one at a time", func(t *testing.T) { testDrainRate(t, func(f *fakeChannel) Channel { return f }) })
	t.Run("batches", func(t *testing.T) { testDrainRate(t, func(f *fakeChannel) Channel { return perMessageBatch{f} }) })
}

func testDrainRate(t *testing.T, wrap func(*fakeChannel) Channel) {
	reg := testRegistry(t)
	devs := fixture(t, reg, "p", 4)
	addAction(t, reg, "p", addRule(t, reg, "p", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDeviceMessage, Event: registry.EventReport}}))
	isDown := true
	f := newFake(func(*Message) error {
		if isDown {
			return errors.New("down")
		}
		return nil
	})
	e := New(Options{Registry: reg, DrainRate: 100, RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond,
		Poll: 5 * time.Millisecond, Reload: 20 * time.Millisecond,
		Openers: map[string]Opener{registry.ChannelHTTP: func(context.Context, *registry.RuleAction) (Channel, error) { return wrap(f), nil }}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	uplinks(t, reg, devs[:1], 1)
	waitFor(t, "a failure", 5*time.Second, func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.calls > 0 })
	uplinks(t, reg, devs, 50) // the backlog: 201 messages
	f.mu.Lock()
	isDown = false
	f.mu.Unlock()
	start := time.Now()
	waitFor(t, "the backlog", 10*time.Second, func() bool { return f.count() == 201 })
	// 100/s with a burst of 10: at least (201-10)/100 s.
	if d := time.Since(start); d < 1800*time.Millisecond {
		t.Errorf("201 messages drained in %v, faster than 100/s", d)
	}
	for i, d := range devs {
		from := 2
		if i == 0 {
			wantInOrder(t, d, f.seqs(d), from, 51)
			continue
		}
		wantInOrder(t, d, f.seqs(d), from, 50)
	}
	// Caught up, it delivers at full speed again: a backlog built while
	// the destination is slow (not failing) is not rate limited.
	hold := make(chan struct{})
	f.hold.Store(&hold)
	uplinks(t, reg, devs, 50)
	start = time.Now()
	close(hold)
	waitFor(t, "new messages", 10*time.Second, func() bool { return f.count() == 401 })
	// Rate limited, they would take 1.9 s.
	if d := time.Since(start); d > 1200*time.Millisecond {
		t.Errorf("200 messages after the drain took %v: still rate limited", d)
	}
}

// On a cluster one node at a time drives an action (its lease); when
// that node stops, another takes the action over from the acknowledged
// cursor.
func TestOneNodePerAction(t *testing.T) {
	reg, store := testRegistryStore(t)
	devs := fixture(t, reg, "p", 2)
	action := addAction(t, reg, "p", addRule(t, reg, "p", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDeviceMessage, Event: registry.EventReport}}))
	fa, fb := newFake(nil), newFake(nil)
	ttl := 300 * time.Millisecond
	stopA := startEngine(t, reg, map[string]*fakeChannel{action: fa}, Options{Lease: registry.NewStoreLease(store, "a", nil), LeaseTTL: ttl})
	time.Sleep(100 * time.Millisecond) // a takes the lease first
	startEngine(t, reg, map[string]*fakeChannel{action: fb}, Options{Lease: registry.NewStoreLease(store, "b", nil), LeaseTTL: ttl})
	uplinks(t, reg, devs, 20)
	waitFor(t, "node a's deliveries", 5*time.Second, func() bool { return fa.count() == 40 })
	if fb.count() != 0 {
		t.Fatalf("both nodes delivered: a %d, b %d", fa.count(), fb.count())
	}
	stopA()
	uplinks(t, reg, devs, 10)
	waitFor(t, "node b taking over", 5*time.Second, func() bool { return fb.count() >= 20 })
	for _, d := range devs {
		got := fb.seqs(d)
		wantInOrder(t, d, got, int(got[0]), len(got))
		if got[len(got)-1] != 31 || got[0] > 22 {
			t.Errorf("%s: node b delivered %v, want from at most 22 (after a's last ack) to 31", d, got)
		}
	}
}

// Events the backlog bounds trimmed before an action delivered them are
// counted as dropped, and the action goes on from the oldest kept.
func TestTrimmedBacklogIsCountedAndSkipped(t *testing.T) {
	st, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: registry.Queues()})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Options{Store: st, MasterKey: bytes.Repeat([]byte{5}, 32),
		Events: registry.EventOptions{MaxEvents: 10}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close(); st.Close() })
	devs := fixture(t, reg, "p", 1)
	action := addAction(t, reg, "p", addRule(t, reg, "p", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDeviceMessage, Event: registry.EventReport}}))
	uplinks(t, reg, devs, 30) // seqs 2..31, while no engine runs
	if _, err := reg.SweepEvents(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := newFake(nil)
	e := New(Options{Registry: reg, Poll: 5 * time.Millisecond, Reload: 20 * time.Millisecond,
		Openers: map[string]Opener{registry.ChannelHTTP: func(context.Context, *registry.RuleAction) (Channel, error) { return f, nil }}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the kept events", 5*time.Second, func() bool { return f.count() == 10 })
	wantInOrder(t, devs[0], f.seqs(devs[0]), 22, 10)
	if s := e.Stats(action); s == nil || s.Dropped.Load() != 20 || s.Delivered.Load() != 10 {
		t.Errorf("stats %+v, want 20 dropped and 10 delivered", s)
	}
	uplinks(t, reg, devs, 1)
	waitFor(t, "a new event", 5*time.Second, func() bool { return f.count() == 11 })
}

// batchFake is a fakeChannel that also takes batches; its first batch
// fails.
type batchFake struct {
	*fakeChannel
	mu      sync.Mutex
	batches int
}

func (b *batchFake) DeliverBatch(ctx context.Context, msgs []*Message) error {
	b.mu.Lock()
	b.batches++
	first := b.batches == 1
	b.mu.Unlock()
	if first {
		return errors.New("broker gone")
	}
	for _, m := range msgs {
		if err := b.Deliver(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func TestBatchChannel(t *testing.T) {
	reg := testRegistry(t)
	devs := fixture(t, reg, "p", 3)
	action := addAction(t, reg, "p", addRule(t, reg, "p", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDeviceMessage, Event: registry.EventReport}}))
	b := &batchFake{fakeChannel: newFake(nil)}
	var delays delayLog
	e := New(Options{Registry: reg, Poll: 5 * time.Millisecond, Reload: 20 * time.Millisecond, RetryBase: time.Millisecond,
		RetryMax: 10 * time.Millisecond, DrainRate: 1e6, Lanes: 2, Delivered: delays.add,
		Openers: map[string]Opener{registry.ChannelHTTP: func(context.Context, *registry.RuleAction) (Channel, error) { return b, nil }}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	uplinks(t, reg, devs, 30)
	waitFor(t, "every message", 5*time.Second, func() bool { return b.count() == 90 })
	for _, d := range devs {
		wantInOrder(t, d, b.seqs(d), 2, 30)
	}
	b.mu.Lock()
	batches := b.batches
	b.mu.Unlock()
	if batches < 2 {
		t.Errorf("%d batches: the channel's batches were not used", batches)
	}
	if s := e.Stats(action); s.Delivered.Load() != 90 || s.Failures.Load() != 1 {
		t.Errorf("delivered %d, failures %d; want 90 and 1", s.Delivered.Load(), s.Failures.Load())
	}
	delays.check(t, action, 90, 0)
}

// delayLog records what Options.Delivered observes.
type delayLog struct {
	mu     sync.Mutex
	action map[string]int
	delays []time.Duration
}

func (l *delayLog) add(action string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.action == nil {
		l.action = map[string]int{}
	}
	l.action[action]++
	l.delays = append(l.delays, d)
}

// check wants n observations, all of action, each at least min and
// within the test's time.
func (l *delayLog) check(t *testing.T, action string, n int, min time.Duration) {
	t.Helper()
	// A delivery is observed after the channel returns, so a little after
	// the channel counted it.
	waitFor(t, fmt.Sprint(n, " delays"), 5*time.Second, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.delays) >= n
	})
	time.Sleep(50 * time.Millisecond) // room for an observation too many
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.delays) != n || l.action[action] != n {
		t.Fatalf("%d delays observed (%v by action), want %d of action %s", len(l.delays), l.action, n, action)
	}
	for _, d := range l.delays {
		if d < min || d > time.Minute {
			t.Errorf("delay %v, want within [%v, 1m]", d, min)
		}
	}
}

// Options.Delivered sees each acknowledged message once, with the delay
// from its event's time, which includes the destination's own time; a
// failed attempt is not observed.
func TestDeliveredObservesDelay(t *testing.T) {
	reg := testRegistry(t)
	devs := fixture(t, reg, "p", 2)
	action := addAction(t, reg, "p", addRule(t, reg, "p", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDeviceMessage, Event: registry.EventReport}}))
	const slow = 15 * time.Millisecond
	tries := map[string]int{}
	f := newFake(func(m *Message) error {
		tries[m.RequestID]++
		if tries[m.RequestID] == 1 {
			return errors.New("busy")
		}
		time.Sleep(slow)
		return nil
	})
	var delays delayLog
	startEngine(t, reg, map[string]*fakeChannel{action: f}, Options{Lanes: 2, RetryBase: time.Millisecond,
		RetryMax: time.Millisecond, DrainRate: 1e6, Delivered: delays.add})
	uplinks(t, reg, devs, 5)
	waitFor(t, "10 deliveries", 10*time.Second, func() bool { return f.count() == 10 })
	delays.check(t, action, 10, slow)
}

// A flow-control policy lowers the drain rate of the actions it applies to.
func TestFlowControlPolicyBoundsTheDrain(t *testing.T) {
	reg := testRegistry(t)
	devs := fixture(t, reg, "p", 2)
	action := addAction(t, reg, "p", addRule(t, reg, "p", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDeviceMessage, Event: registry.EventReport}}))
	if _, err := reg.AddFlowControlPolicy(context.Background(), "p", registry.FlowControlPolicy{
		Scope: registry.FlowScopeAction, ScopeValue: action, Limit: 50}); err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	down.Store(true)
	f := newFake(func(*Message) error {
		if down.Load() {
			return errors.New("down")
		}
		return nil
	})
	startEngine(t, reg, map[string]*fakeChannel{action: f}, Options{DrainRate: 1e6, RetryMax: 10 * time.Millisecond})
	uplinks(t, reg, devs[:1], 1)
	waitFor(t, "a failure", 5*time.Second, func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.calls > 0 })
	uplinks(t, reg, devs, 25) // 51 messages in all
	down.Store(false)
	start := time.Now()
	waitFor(t, "the backlog", 10*time.Second, func() bool { return f.count() == 51 })
	// 50/s with a burst of 5: at least (51-5)/50 s, where the engine's
	// own drain rate would take no time.
	if d := time.Since(start); d < 800*time.Millisecond {
		t.Errorf("51 messages drained in %v, faster than the policy's 50/s", d)
	}
}
