package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// linkHub is an in-process NodeLink between the registries of one test:
// a node's Call runs the other node's served function. A node marked
// down is unreachable.
type linkHub struct {
	mu    sync.Mutex
	serve map[string]func(context.Context, []byte) []byte
	down  map[string]bool
	calls atomic.Int64
}

type hubLink struct {
	hub  *linkHub
	node string
}

func (h *linkHub) setDown(node string, down bool) {
	h.mu.Lock()
	h.down[node] = down
	h.mu.Unlock()
}

func (l hubLink) Call(ctx context.Context, node string, req []byte) ([]byte, error) {
	l.hub.calls.Add(1)
	l.hub.mu.Lock()
	fn, down := l.hub.serve[node], l.hub.down[node]
	l.hub.mu.Unlock()
	if fn == nil || down {
		return nil, fmt.Errorf("test link to %s: %w", node, ErrNodeUnreachable)
	}
	ans := make(chan []byte, 1)
	go func() { ans <- fn(ctx, bytes.Clone(req)) }()
	select {
	case b := <-ans:
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l hubLink) Serve(fn func(context.Context, []byte) []byte) {
	l.hub.mu.Lock()
	l.hub.serve[l.node] = fn
	l.hub.mu.Unlock()
}

// clusterNodes starts two registries, "node-a" and "node-b", as a
// cluster wires them: one store, one bus, a NodeLink, and the default
// presence of a named node (StorePresence).
func clusterNodes(t *testing.T, clock *fakeClock) (a, b *Registry, hub *linkHub, store kv.Store) {
	t.Helper()
	hub = &linkHub{serve: map[string]func(context.Context, []byte) []byte{}, down: map[string]bool{}}
	a, b, store = openNodes(t, clock, func(node string, o *Options) { o.Link = hubLink{hub, node} })
	return a, b, hub, store
}

// A request sent through a node that does not hold the device's session
// reaches the device through the node that does, and the answer comes
// back; when that node is unreachable a command fails with
// ErrNodeUnreachable and a message stays PENDING until the device's next
// connection.
func TestClusterForwardsToTheSessionsNode(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	a, b, hub, _ := clusterNodes(t, clock)
	fa := setUpRouter(t, a, clock, true)
	fb := setUpRouter(t, b, clock, false)
	ctx := context.Background()
	mq, nb := fa.device(t, "mq_m1"), fa.device(t, "nb_n1")
	sMQ := (&routerFixture{r: b}).connect(t, "mq_m1")
	if _, err := b.Connected(ctx, "nb_n1"); err != nil {
		t.Fatal(err)
	}

	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := a.Router().SendCommand(cctx, mq, Command{CommandID: "c1", CommandName: "ping"})
	if err != nil || string(body) != `{"ok":true}` {
		t.Fatalf("command through a: %s %v", body, err)
	}
	body, err = a.Router().SendProperties(cctx, mq, PropertiesRequest{Op: PropertiesSet, RequestID: "p1",
		Services: json.RawMessage(`[{"service_id":"s","properties":{"x":1}}]`)})
	if err != nil || string(body) != `{"result_code":0}` {
		t.Fatalf("properties set through a: %s %v", body, err)
	}
	if p := fb.mqtt.gotProps(); len(p) != 1 || p[0] != `mq_m1 set p1  [{"service_id":"s","properties":{"x":1}}]` {
		t.Fatalf("b's MQTT adapter got properties requests %q", p)
	}
	m, err := a.Router().SendMessage(ctx, "proj", mq, NewDownlinkMessage{MessageID: "m1", Message: json.RawMessage(`"hi"`), Payload: []byte("hi")})
	if err != nil || m.Status != MessageDelivered {
		t.Fatalf("message through a: %+v %v", m, err)
	}
	cmd, err := a.Router().CreateAsyncCommand(ctx, "proj", nb, NewAsyncCommand{Paras: json.RawMessage(`{}`)})
	if err != nil || cmd.Status != AsyncPending {
		t.Fatalf("async command through a: %+v %v", cmd, err)
	}
	if c, q, msgs := fb.mqtt.got(); len(c) != 1 || len(msgs) != 1 || msgs[0] != "m1" || len(q) != 0 {
		t.Fatalf("b's MQTT adapter got commands %v, messages %v", c, msgs)
	}
	if _, q, _ := fb.nbio.got(); len(q) != 1 || q[0] != "nb_n1" {
		t.Fatalf("b's LwM2M adapter was told of async commands for %v", q)
	}
	if c, q, msgs := fa.mqtt.got(); len(c)+len(q)+len(msgs)+len(fa.mqtt.gotProps()) != 0 {
		t.Fatalf("a's own adapter delivered: %v %v %v", c, q, msgs)
	}

	hub.setDown("node-b", true)
	if _, err := a.Router().SendCommand(cctx, mq, Command{CommandID: "c2"}); !errors.Is(err, ErrNodeUnreachable) {
		t.Fatalf("command with b unreachable: %v, want ErrNodeUnreachable", err)
	}
	if _, err := a.Router().SendProperties(cctx, mq, PropertiesRequest{Op: PropertiesGet, RequestID: "p2"}); !errors.Is(err, ErrNodeUnreachable) {
		t.Fatalf("properties get with b unreachable: %v, want ErrNodeUnreachable", err)
	}
	m, err = a.Router().SendMessage(ctx, "proj", mq, NewDownlinkMessage{MessageID: "m2", Message: json.RawMessage(`"hi"`), Payload: []byte("hi")})
	if err != nil || m.Status != MessagePending {
		t.Fatalf("message with b unreachable: %+v %v, want PENDING", m, err)
	}
	cmd, err = a.Router().CreateAsyncCommand(ctx, "proj", nb, NewAsyncCommand{Paras: json.RawMessage(`{}`), SendStrategy: SendImmediately})
	if err != nil || cmd.Status != AsyncPending {
		t.Fatalf("async command with b unreachable: %+v %v, want it stored PENDING", cmd, err)
	}
	hub.setDown("node-b", false)
	// The device's connection to b drops; it comes back to b, which
	// learned of the held message from the bus, not from a's request.
	b.Disconnected("mq_m1", sMQ)
	(&routerFixture{r: b}).connect(t, "mq_m1")
	if got, err := a.DownlinkMessage(ctx, "proj", "mq_m1", "m2"); err != nil || got.Status != MessageDelivered {
		t.Fatalf("held message after the reconnect: %+v %v", got, err)
	}
	if _, _, msgs := fb.mqtt.got(); len(msgs) != 2 || msgs[1] != "m2" {
		t.Fatalf("b's adapter got messages %v", msgs)
	}
}

// An asynchronous command queued through node a for a device whose
// session is on node b reaches b's adapter even when a's request to b is
// lost: through the bus's notice of the pending entry, else through the
// reconnection that follows lost notices. And a request that arrives
// before the notice still finds the command.
func TestClusterAsyncCommandSurvivesALostRequest(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	a, b, hub, _ := clusterNodes(t, clock)
	fa := setUpRouter(t, a, clock, true)
	fb := setUpRouter(t, b, clock, false)
	ctx := context.Background()
	nb := fa.device(t, "nb_n1")
	if _, err := b.Connected(ctx, "nb_n1"); err != nil {
		t.Fatal(err)
	}
	mayWait := func() []string {
		fb.nbio.mu.Lock()
		defer fb.nbio.mu.Unlock()
		return append([]string(nil), fb.nbio.mayWait...)
	}

	// b unreachable by request, on the bus: the notice names the device.
	hub.setDown("node-b", true)
	if _, err := a.Router().CreateAsyncCommand(ctx, "proj", nb, NewAsyncCommand{Paras: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if got := mayWait(); len(got) != 1 || got[0] != "nb_n1" {
		t.Fatalf("b's adapter was told commands may wait for %q, want [nb_n1]", got)
	}
	if cmds, err := b.PendingAsyncCommands(ctx, "nb_n1", 10); err != nil || len(cmds) != 1 {
		t.Fatalf("b's look at the next uplink: %d commands, %v", len(cmds), err)
	}

	// b off the bus too: nothing reaches it until its reconnection says
	// notices were lost, which tells the adapter to look for every device.
	buses := b.inval.(*busNode)
	buses.deaf.Store(true)
	if _, err := a.Router().CreateAsyncCommand(ctx, "proj", nb, NewAsyncCommand{Paras: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if got := mayWait(); len(got) != 1 {
		t.Fatalf("a deaf node's adapter was told %q", got)
	}
	buses.deaf.Store(false)
	b.invalidated(nil)
	if got := mayWait(); len(got) != 2 || got[1] != "" {
		t.Fatalf("after lost notices b's adapter was told %q, want every device", got)
	}

	// The request, with b deaf to the bus, arrives before any notice: the
	// adapter's look finds the command all the same.
	cmds, err := b.PendingAsyncCommands(ctx, "nb_n1", 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds { // b delivers what waits
		if _, err := b.StartAsyncCommand(ctx, c.CommandID, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if cmds, _ := b.PendingAsyncCommands(ctx, "nb_n1", 10); len(cmds) != 0 {
		t.Fatalf("%d commands still pending", len(cmds))
	}
	hub.setDown("node-b", false)
	buses.deaf.Store(true)
	if _, err := a.Router().CreateAsyncCommand(ctx, "proj", nb, NewAsyncCommand{Paras: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if _, q, _ := fb.nbio.got(); len(q) != 1 || q[0] != "nb_n1" {
		t.Fatalf("b's adapter was told of new commands for %q", q)
	}
	if cmds, err := b.PendingAsyncCommands(ctx, "nb_n1", 10); err != nil || len(cmds) != 1 {
		t.Fatalf("b's look after a's request: %d commands, %v", len(cmds), err)
	}
}

// onePoolStore is a store with one connection for views, as a pooled
// engine with max_conns 1 (PostgreSQL's pgkv): a view waits for it, and
// one that waits a second, as a view nested in a view waits for ever,
// fails and is counted.
type onePoolStore struct {
	kv.Store
	conn    chan struct{}
	starved atomic.Int32
}

func (s *onePoolStore) View(ctx context.Context, fn func(kv.Reader) error) error {
	select {
	case s.conn <- struct{}{}:
	case <-time.After(time.Second):
		s.starved.Add(1)
		return fmt.Errorf("no connection for a view: %w", kv.ErrUnavailable)
	}
	defer func() { <-s.conn }()
	return s.Store.View(ctx, fn)
}

// A cluster node reads a device's status (its session in the store)
// through the view it is in, never in a view of its own nested in it: a
// pooled engine would give each a connection, and as many concurrent
// callers as the pool has connections would wait for one another for
// ever (found by a connect storm of one device on PostgreSQL).
func TestClusterStatusReadInTheCallersView(t *testing.T) {
	base, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: Queues()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { base.Close() })
	s := &onePoolStore{Store: base, conn: make(chan struct{}, 1)}
	r, err := New(Options{Store: s, MasterKey: bytes.Repeat([]byte{7}, 32), Node: "node-a", SweepInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ctx := context.Background()
	mustProduct(t, r, "proj", "prod", "MQTT")
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: "n1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Connected(ctx, "prod_n1"); err != nil {
		t.Fatal(err)
	}
	// A change of an active device encodes its event (status included)
	// in the view that reads it.
	name := "renamed"
	if _, err := r.UpdateDevice(ctx, "proj", "prod_n1", DeviceUpdate{DeviceName: &name}); err != nil {
		t.Fatal(err)
	}
	list, err := r.ListDevices(ctx, "proj", DeviceFilter{ProductID: "prod"}, Page{Limit: 10})
	if err != nil || len(list.Devices) != 1 || list.Devices[0].Status != StatusOnline {
		t.Fatalf("list: %+v %v", list, err)
	}
	if n := s.starved.Load(); n != 0 {
		t.Fatalf("%d views waited for a connection held by the view they were nested in", n)
	}
}

// Without a session anywhere a forwarded kind behaves as on one node: a
// command is ErrNotConnected, a message is held.
func TestClusterNoSessionAnywhere(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	a, _, hub, _ := clusterNodes(t, clock)
	fa := setUpRouter(t, a, clock, true)
	ctx := context.Background()
	if _, err := a.Router().SendCommand(ctx, fa.device(t, "mq_m1"), Command{CommandID: "c"}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("command: %v", err)
	}
	if m := fa.send(t, "mq_m1", "m1"); m.Status != MessagePending {
		t.Fatalf("message: %s", m.Status)
	}
	if n := hub.calls.Load(); n != 0 {
		t.Fatalf("%d calls to other nodes for a device with no session", n)
	}
}

// kickLog records the kicks a node's adapters get.
type kickLog struct {
	mu      sync.Mutex
	reasons []string
}

func (k *kickLog) Kick(_, reason string) {
	k.mu.Lock()
	k.reasons = append(k.reasons, reason)
	k.mu.Unlock()
}

func (k *kickLog) got() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.reasons...)
}

// statusHistory returns the device's status events, in stream order.
func statusHistory(t *testing.T, r *Registry, dev string) []string {
	t.Helper()
	var out []string
	var cursor uint64
	if _, err := r.RelayEvents(context.Background()); err != nil {
		t.Fatal(err)
	}
	for {
		p, err := r.Events(context.Background(), "proj", cursor, MaxEventsPage)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range p.Events {
			if ev.Resource == ResourceDeviceStatus && ev.Header.DeviceID == dev {
				var body statusEventBody
				if err := json.Unmarshal(ev.Body, &body); err != nil {
					t.Fatal(err)
				}
				out = append(out, string(body.Status))
			}
		}
		if len(p.Events) == 0 {
			return out
		}
		cursor = p.Next
	}
}

func flushAll(t *testing.T, rs ...*Registry) {
	t.Helper()
	for _, r := range rs {
		if err := r.flushStatus(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// A device that connects to b while its session is on a takes it over: a
// is asked to close its session, a's late disconnect writes no OFFLINE,
// and a's ONLINE flushed after b's OFFLINE does not bring the device back.
func TestClusterTakeover(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	a, b, _, store := clusterNodes(t, clock)
	ctx := context.Background()
	mustProduct(t, a, "proj", "prod", "MQTT")
	d, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	ka, kb := &kickLog{}, &kickLog{}
	a.AddKicker(ka)
	b.AddKicker(kb)

	sa, err := a.Connected(ctx, d.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	sb, err := b.Connected(ctx, d.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	if sb <= sa {
		t.Fatalf("b's session %d does not number above a's %d", sb, sa)
	}
	// a's adapter, still establishing sa when b's kick came, learns that
	// sa lost; b's session is current.
	if !a.Superseded(d.DeviceID, sa) || b.Superseded(d.DeviceID, sb) || a.Superseded(d.DeviceID, sb) {
		t.Fatalf("superseded: a's %v, b's %v", a.Superseded(d.DeviceID, sa), b.Superseded(d.DeviceID, sb))
	}
	if got := ka.got(); len(got) != 1 || got[0] != reasonTakenOver {
		t.Fatalf("a's kicks: %q, want one %q", got, reasonTakenOver)
	}
	if got := kb.got(); len(got) != 0 {
		t.Fatalf("b was kicked: %q", got)
	}
	clock.Advance(time.Second)
	if superseded := a.Disconnected(d.DeviceID, sa); !superseded {
		t.Fatal("a's old session was not reported superseded")
	}
	flushAll(t, b) // a's ONLINE waits
	for _, r := range []*Registry{a, b} {
		if got, err := r.ProjectDevice(ctx, "proj", d.DeviceID); err != nil || got.Status != StatusOnline {
			t.Fatalf("%s sees %q (%v), want ONLINE", r.node, got.Status, err)
		}
	}
	if n := a.Online() + b.Online(); n != 1 || b.Online() != 1 {
		t.Fatalf("online: a %d, b %d", a.Online(), b.Online())
	}
	clock.Advance(time.Second)
	b.Disconnected(d.DeviceID, sb)
	flushAll(t, b, a) // a's stale ONLINE last
	if got := statusHistory(t, a, d.DeviceID); fmt.Sprint(got) != "[ONLINE OFFLINE]" {
		t.Fatalf("status events %v, want [ONLINE OFFLINE]", got)
	}
	if got, _ := a.ProjectDevice(ctx, "proj", d.DeviceID); got.Status != StatusOffline || !got.StatusTime.Equal(clock.Now()) {
		t.Fatalf("after leaving b: %q at %v, want OFFLINE at %v", got.Status, got.StatusTime, clock.Now())
	}
	_ = store
}

// A takeover whose old node cannot be reached still wins; the old node's
// disconnect, when it comes, is superseded.
func TestClusterTakeoverOldNodeUnreachable(t *testing.T) {
	a, b, hub, _ := clusterNodes(t, nil)
	ctx := context.Background()
	mustProduct(t, a, "proj", "prod", "MQTT")
	if _, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: "n1"}); err != nil {
		t.Fatal(err)
	}
	ka := &kickLog{}
	a.AddKicker(ka)
	sa, err := a.Connected(ctx, "prod_n1")
	if err != nil {
		t.Fatal(err)
	}
	hub.setDown("node-a", true)
	if _, err := b.Connected(ctx, "prod_n1"); err != nil {
		t.Fatalf("takeover with a unreachable: %v", err)
	}
	if len(ka.got()) != 0 {
		t.Fatal("a was kicked through a link that is down")
	}
	if !a.Disconnected("prod_n1", sa) {
		t.Fatal("a's disconnect after the takeover was not superseded")
	}
	if s, ok, _ := a.presence.Lookup(ctx, "prod_n1"); !ok || s.Node != "node-b" {
		t.Fatalf("session after a's disconnect: %+v %v", s, ok)
	}
}

// A connect of this node that another node's newer connect overtook
// before it finished fails with ErrTakenOver and counts as no session.
func TestClusterConnectOvertaken(t *testing.T) {
	a, _, _, s := clusterNodes(t, nil)
	p := NewStorePresence(s, "node-a")
	ctx := context.Background()
	now := time.Now()
	p.yield("dev", Session(now.Add(time.Hour).UnixNano())) // node-b's takeover arrived first
	if _, _, _, err := p.Connect(ctx, "dev", now); !errors.Is(err, ErrTakenOver) {
		t.Fatalf("overtaken connect: %v", err)
	}
	if p.Online() != 0 {
		t.Fatalf("online %d", p.Online())
	}
	_ = a
}

// Connects of one device racing through both nodes leave exactly one
// live session, and a status history that alternates and ends OFFLINE
// once the device has gone.
func TestClusterRacingConnects(t *testing.T) {
	a, b, _, _ := clusterNodes(t, nil)
	ctx := context.Background()
	mustProduct(t, a, "proj", "prod", "MQTT")
	if _, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: "n1"}); err != nil {
		t.Fatal(err)
	}
	const dev = "prod_n1"
	nodes := []*Registry{a, b}
	held := make([]Session, 2) // each node's last session
	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	for round := range rounds {
		var wg sync.WaitGroup
		for i, r := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := r.Connected(ctx, dev)
				if err != nil && !errors.Is(err, ErrTakenOver) {
					t.Error(err)
				}
				if err == nil {
					held[i] = s
				}
			}()
		}
		wg.Wait()
		if round%3 == 0 { // one side's connection drops
			i := rand.IntN(2)
			nodes[i].Disconnected(dev, held[i])
		}
		if round%7 == 0 {
			flushAll(t, b, a)
		}
	}
	// The last round connected both: one won.
	s, ok, err := a.presence.Lookup(ctx, dev)
	if err != nil || !ok {
		t.Fatalf("no live session at the end: %v", err)
	}
	if n := a.Online() + b.Online(); n != 1 {
		t.Fatalf("%d live sessions (a %d, b %d), want 1", n, a.Online(), b.Online())
	}
	holder := a
	if s.Node == "node-b" {
		holder = b
	}
	if holder.Online() != 1 {
		t.Fatalf("the session is %s's, which holds none", s.Node)
	}
	flushAll(t, a, b)
	if got, _ := b.Device(ctx, dev); got.Status != StatusOnline {
		t.Fatalf("status %q, want ONLINE", got.Status)
	}
	// Both nodes' connections drop; the last status is OFFLINE.
	for i, r := range nodes {
		r.Disconnected(dev, held[i])
	}
	flushAll(t, a, b)
	h := statusHistory(t, a, dev)
	if len(h) == 0 || h[len(h)-1] != string(StatusOffline) {
		t.Fatalf("status history ends %v", h[max(0, len(h)-3):])
	}
	for i := 1; i < len(h); i++ {
		if h[i] == h[i-1] {
			t.Fatalf("status events %d and %d are both %s", i-1, i, h[i])
		}
	}
}

// Events written at once through both nodes get unique positions in
// commit order: each device's seqs run 1..n without gap or repeat in
// stream order, whichever node recorded them.
func TestClusterEventPositions(t *testing.T) {
	a, b, _, _ := clusterNodes(t, nil)
	ctx := context.Background()
	mustProduct(t, a, "proj", "prod", "MQTT")
	const devices, each = 10, 100 // 2,000 uplinks: each device's from both nodes
	for i := range devices {
		if _, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: fmt.Sprint("n", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for _, r := range []*Registry{a, b} {
		for i := range devices {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range each {
					m := Message{MessageID: fmt.Sprintf("%s-%d", r.node, j), Payload: []byte("x"), Time: time.Now()}
					if err := r.AddMessage(ctx, fmt.Sprint("prod_n", i), m); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	if _, err := b.RelayEvents(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Registry{a, b} {
		seqs := map[string]uint64{}
		seen := map[uint64]bool{}
		var cursor, uplinks uint64
		for {
			p, err := r.Events(ctx, "proj", cursor, MaxEventsPage)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Events) == 0 {
				break
			}
			for _, ev := range p.Events {
				if seen[ev.Position] || ev.Position <= cursor {
					t.Fatalf("%s: position %d repeated or out of order", r.node, ev.Position)
				}
				seen[ev.Position] = true
				cursor = ev.Position
				dev := ev.Header.DeviceID
				if ev.Seq != seqs[dev]+1 {
					t.Fatalf("%s: %s's seq %d after %d in stream order", r.node, dev, ev.Seq, seqs[dev])
				}
				seqs[dev] = ev.Seq
				if ev.Resource == ResourceDeviceMessage {
					uplinks++
				}
			}
		}
		if uplinks != 2*devices*each {
			t.Fatalf("%s reads %d uplink events, want %d", r.node, uplinks, 2*devices*each)
		}
	}
	// The counter is the store's: a node opened now goes on above it.
	last, err := a.lastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l, err := openEventLog(a.store, EventOptions{}, true)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	a.view(ctx, func(rd Reader) error { n, err = readEventPosition(rd); return err })
	if n != last || l.last.Load() != last {
		t.Fatalf("reopened at %d (stored %d), want %d", l.last.Load(), n, last)
	}
}

// A store a single node wrote is taken over by a cluster above every
// position the node handed out.
func TestClusterPositionsContinueSingleNodes(t *testing.T) {
	r, s := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "prod", "MQTT")
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: "n1"}); err != nil {
		t.Fatal(err)
	}
	single := r.events.last.Load()
	if single == 0 {
		t.Fatal("the single node recorded no event")
	}
	l, err := openEventLog(s, EventOptions{}, true)
	if err != nil {
		t.Fatal(err)
	}
	var stored uint64
	r.view(ctx, func(rd Reader) error { stored, err = readEventPosition(rd); return err })
	if l.last.Load() != single || stored != single {
		t.Fatalf("cluster opened at %d (stored %d), want %d", l.last.Load(), stored, single)
	}
}

// The wire format refuses what it cannot read, with an error saying why,
// and carries errors' kinds across.
func TestNodeWire(t *testing.T) {
	for _, tc := range []struct {
		name, req, want string
	}{
		{"unknown kind", `{"v":1,"kind":"reboot","device":"d"}`, `unknown kind "reboot"`},
		{"other version", `{"v":2,"kind":"kick","device":"d"}`, "version 2"},
		{"no device", `{"v":1,"kind":"kick"}`, "names no device"},
		{"command without one", `{"v":1,"kind":"command","device":"d"}`, "without a command"},
		{"properties without a request", `{"v":1,"kind":"properties","device":"d"}`, "without a get or set"},
		{"properties of no known op", `{"v":1,"kind":"properties","device":"d","properties":{"op":"delete"}}`, "without a get or set"},
		{"sub-devices without a change", `{"v":1,"kind":"sub_devices","device":"d"}`, "without a change"},
		{"not json", `kick d`, "not a node request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeNodeRequest([]byte(tc.req))
			if !errors.Is(err, ErrBadNodeRequest) || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Fatalf("%v, want ErrBadNodeRequest naming %q", err, tc.want)
			}
			_, err = decodeNodeAnswer("node-b", answerOf(nil, err))
			if !errors.Is(err, ErrBadNodeRequest) {
				t.Fatalf("answer: %v", err)
			}
		})
	}
	for _, sentinel := range []error{ErrNotConnected, ErrTimeout, ErrUnsupported, ErrNotSubscribed, ErrNotFound} {
		_, err := decodeNodeAnswer("node-b", answerOf(nil, fmt.Errorf("deep: %w", sentinel)))
		var re *RemoteError
		if !errors.Is(err, sentinel) || !errors.As(err, &re) || re.Node != "node-b" {
			t.Fatalf("%v came back as %v", sentinel, err)
		}
	}
	// What the session's adapter finds invalid (an Alibaba session's
	// command without command_name) stays a validation error.
	_, err := decodeNodeAnswer("node-b", answerOf(nil, fmt.Errorf("mqtt: %w", &ValidationError{Field: "command_name", Reason: "is required"})))
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "command_name" || ve.Reason != "is required" {
		t.Fatalf("a validation error came back as %v", err)
	}
	body, err := decodeNodeAnswer("node-b", answerOf(json.RawMessage(`{"x":1}`), nil))
	if err != nil || string(body) != `{"x":1}` {
		t.Fatalf("%s %v", body, err)
	}
}

// Deleting a device (the expiry sweep's path too) deletes its session
// record with it, in the same write.
func TestClusterDeleteDropsSessionRecord(t *testing.T) {
	a, b, _, s := clusterNodes(t, nil)
	ctx := context.Background()
	mustProduct(t, a, "proj", "prod", "MQTT")
	if _, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: "n1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Connected(ctx, "prod_n1"); err != nil {
		t.Fatal(err)
	}
	if err := a.write(ctx, func(w Writer) error {
		d, err := a.getDevice(w, "prod_n1")
		if err != nil {
			return err
		}
		return a.deleteDevice(w, d)
	}); err != nil {
		t.Fatal(err)
	}
	err := s.View(ctx, func(rd kv.Reader) error { _, err := rd.Get(presenceKey("prod_n1")); return err })
	if !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("session record after the delete: %v", err)
	}
}

// Freezing or deleting a device through one node closes its session on
// the node that holds it.
func TestClusterKicksReachTheSessionsNode(t *testing.T) {
	a, b, _, _ := clusterNodes(t, nil)
	ctx := context.Background()
	mustProduct(t, a, "proj", "prod", "MQTT")
	for _, n := range []string{"n1", "n2"} {
		if _, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: n}); err != nil {
			t.Fatal(err)
		}
	}
	ka, kb := &kickLog{}, &kickLog{}
	a.AddKicker(ka)
	b.AddKicker(kb)
	for _, dev := range []string{"prod_n1", "prod_n2"} {
		if _, err := b.Connected(ctx, dev); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.SetFrozen(ctx, "proj", "prod_n1", true); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteDevice(ctx, "proj", "prod_n2"); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(kb.got()); got != "[device frozen device deleted]" {
		t.Fatalf("b's kicks: %s", got)
	}
	if b.Online() != 0 {
		t.Fatalf("b still counts %d sessions", b.Online())
	}
}
