package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// beat has each registry write its heartbeat (and read the membership).
func beat(t *testing.T, started time.Time, rs ...*Registry) {
	t.Helper()
	for _, r := range rs {
		if err := r.Heartbeat(context.Background(), NodeInfo{Started: started}); err != nil {
			t.Fatal(err)
		}
	}
}

func statusOf(t *testing.T, r *Registry, id string) Status {
	t.Helper()
	d, err := r.ProjectDevice(context.Background(), "proj", id)
	if err != nil {
		t.Fatal(err)
	}
	return d.Status
}

// A node killed without warning: its sessions stay live for NodeLiveness
// after its last heartbeat (a command then fails as unreachable), then
// count as none (OFFLINE, commands refused, messages and async commands
// held, no call to the dead node, a reconnect elsewhere kicks nobody);
// the sweeps' lease holder ends the rows still naming it with one
// OFFLINE each and leaves the reconnected device's alone.
func TestClusterDeadNodesSessions(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	a, b, hub, store := clusterNodes(t, clock)
	fa := setUpRouter(t, a, clock, true)
	setUpRouter(t, b, clock, false)
	ctx := context.Background()
	if _, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "mq", NodeID: "m2"}); err != nil {
		t.Fatal(err)
	}
	beat(t, clock.Now(), a, b)
	clock.Advance(time.Second)
	for _, id := range []string{"mq_m1", "mq_m2", "nb_n1"} {
		(&routerFixture{r: b}).connect(t, id)
	}
	flushAll(t, b)
	if s := statusOf(t, a, "mq_m1"); s != StatusOnline {
		t.Fatalf("device on b, seen from a: %s", s)
	}

	// b dies (its last heartbeat was at 12:00:00).
	hub.setDown("node-b", true)
	clock.Advance(NodeLiveness - 2*time.Second)
	beat(t, clock.Now().Add(-time.Minute), a)
	if s := statusOf(t, a, "mq_m1"); s != StatusOnline {
		t.Fatalf("within the liveness window: %s", s)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := a.Router().SendCommand(cctx, fa.device(t, "mq_m1"), Command{CommandID: "c1"}); !errors.Is(err, ErrNodeUnreachable) {
		t.Fatalf("command within the window: %v", err)
	}
	clock.Advance(2 * time.Second) // b's heartbeat is now older than NodeLiveness
	calls := hub.calls.Load()
	for _, id := range []string{"mq_m1", "mq_m2", "nb_n1"} {
		if s := statusOf(t, a, id); s != StatusOffline {
			t.Fatalf("%s on the dead node: %s, want OFFLINE", id, s)
		}
	}
	if _, err := a.Router().SendCommand(cctx, fa.device(t, "mq_m1"), Command{CommandID: "c2"}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("command to a device of the dead node: %v, want ErrNotConnected", err)
	}
	if m := fa.send(t, "mq_m1", "m1"); m.Status != MessagePending {
		t.Fatalf("message: %s, want PENDING", m.Status)
	}
	cmd, err := a.Router().CreateAsyncCommand(ctx, "proj", fa.device(t, "nb_n1"), NewAsyncCommand{Paras: json.RawMessage(`{}`)})
	if err != nil || cmd.Status != AsyncPending {
		t.Fatalf("async command: %+v %v, want PENDING", cmd, err)
	}
	// mq_m2 comes back through a: its old session is not asked to close.
	fa.connect(t, "mq_m2")
	if n := hub.calls.Load(); n != calls {
		t.Fatalf("%d calls to the dead node", n-calls)
	}
	if s := statusOf(t, a, "mq_m2"); s != StatusOnline {
		t.Fatalf("reconnected device: %s", s)
	}
	if _, _, msgs := fa.mqtt.got(); len(msgs) != 0 {
		t.Fatalf("a delivered %v to a device it does not hold", msgs)
	}

	if !a.housekeep(ctx) {
		t.Fatal("a does not hold the sweeps' lease")
	}
	for id, want := range map[string]string{"mq_m1": "[ONLINE OFFLINE]", "nb_n1": "[ONLINE OFFLINE]", "mq_m2": "[ONLINE]"} {
		if got := fmt.Sprint(statusHistory(t, a, id)); got != want {
			t.Errorf("%s: status events %s, want %s", id, got, want)
		}
	}
	d, err := a.ProjectDevice(ctx, "proj", "mq_m1")
	if err != nil || d.Status != StatusOffline || !d.StatusTime.Equal(time.Date(2026, 12, 7, 12, 0, 1, 0, time.UTC)) {
		t.Fatalf("swept device: %+v %v, want OFFLINE at its session's start (after b's last heartbeat)", d, err)
	}
	if s, ok, _ := a.presence.Lookup(ctx, "mq_m2"); !ok || s.Node != "node-a" {
		t.Fatalf("reconnected device's row: %+v %v", s, ok)
	}
	if s, ok, _ := a.presence.Lookup(ctx, "mq_m1"); ok {
		t.Fatalf("swept row still live: %+v", s)
	}
	err = store.View(ctx, func(rd kv.Reader) error {
		_, err := rd.Get(nodeBeatKey("node-b"))
		return err
	})
	if !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("dead node's heartbeat after the sweep: %v, want it deleted", err)
	}
	if n, err := a.sweepDeadNodes(ctx); n != 0 || err != nil {
		t.Fatalf("second sweep ended %d (%v)", n, err)
	}
	if got := fmt.Sprint(statusHistory(t, a, "mq_m1")); got != "[ONLINE OFFLINE]" {
		t.Fatalf("after a second sweep: %s", got)
	}
}

// A dead node's sweep ends only the rows of the session it scanned: a
// device that reconnected to the dead node's name meanwhile (a restart)
// keeps its session, and one begun at or after the sweep's bound is not
// scanned.
func TestEndDeadSessionsSkipsChangedRows(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	a, b, _, _ := clusterNodes(t, clock)
	setUpRouter(t, a, clock, true)
	ctx := context.Background()
	beat(t, clock.Now(), a, b)
	for _, id := range []string{"mq_m1", "nb_n1"} {
		if _, err := b.Connected(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	flushAll(t, b)
	rows, next, n, err := a.deadRows(ctx, "node-b", clock.Now().Add(time.Minute), nil)
	if err != nil || len(rows) != 2 || next != nil || n != 2 {
		t.Fatalf("scan: %d rows, next %q, scanned %d, %v", len(rows), next, n, err)
	}
	if rows, _, _, err := a.deadRows(ctx, "node-b", clock.Now(), nil); err != nil || len(rows) != 0 {
		t.Fatalf("sessions begun at the sweep's bound: %d (%v), want none (a later run's)", len(rows), err)
	}
	clock.Advance(time.Second)
	if _, err := b.Connected(ctx, "mq_m1"); err != nil { // a newer session on the same node
		t.Fatal(err)
	}
	ended, err := a.endDeadSessions(ctx, "node-b", time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC), rows)
	if err != nil || ended != 1 {
		t.Fatalf("ended %d (%v), want 1", ended, err)
	}
	if s, ok, _ := a.presence.Lookup(ctx, "mq_m1"); !ok || s.Node != "node-b" {
		t.Fatalf("newer session: %+v %v", s, ok)
	}
	if _, ok, _ := a.presence.Lookup(ctx, "nb_n1"); ok {
		t.Fatal("scanned session not ended")
	}
}

// A node restarted under the same name (killed, back before the
// liveness window ran out) no longer holds the sessions of its previous
// run, and ends them itself with OFFLINE events; a node no heartbeat
// names holds none; a node that joined since
// the last heartbeat is found by a read of its record.
func TestClusterSessionsOfRestartedAndUnknownNodes(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	a, b, _, store := clusterNodes(t, clock)
	setUpRouter(t, a, clock, true)
	ctx := context.Background()
	beat(t, clock.Now().Add(-time.Second), a, b)
	if _, err := b.Connected(ctx, "mq_m1"); err != nil {
		t.Fatal(err)
	}
	if s := statusOf(t, a, "mq_m1"); s != StatusOnline {
		t.Fatalf("before b's restart: %s", s)
	}
	flushAll(t, b)
	clock.Advance(3 * time.Second)
	beat(t, clock.Now(), b) // b's new run
	beat(t, time.Time{}, a)
	if s := statusOf(t, a, "mq_m1"); s != StatusOffline {
		t.Fatalf("session of b's previous run: %s, want OFFLINE", s)
	}
	// b ends its previous run's sessions itself, and only those.
	clock.Advance(time.Second)
	if _, err := b.Connected(ctx, "ht_h1"); err != nil {
		t.Fatal(err)
	}
	b.housekeep(ctx)
	if got := fmt.Sprint(statusHistory(t, a, "mq_m1")); got != "[ONLINE OFFLINE]" {
		t.Fatalf("status events of the previous run's device: %s", got)
	}
	if s, ok, _ := a.liveSession(ctx, "ht_h1"); !ok || s.Node != "node-b" {
		t.Fatalf("session of b's new run: %+v %v", s, ok)
	}
	if n, err := b.sweepPreviousRun(ctx); n != 0 || err != nil {
		t.Fatalf("second sweep of the previous run: %d %v", n, err)
	}

	// node-c's session, before node-c has a heartbeat record (the device
	// is activated through b, whose writes a hears of).
	sb, err := b.Connected(ctx, "nb_n1")
	if err != nil {
		t.Fatal(err)
	}
	b.Disconnected("nb_n1", sb)
	c, err := New(Options{Store: store, MasterKey: bytes.Repeat([]byte{7}, 32), Node: "node-c", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Connected(ctx, "nb_n1"); err != nil {
		t.Fatal(err)
	}
	if s := statusOf(t, a, "nb_n1"); s != StatusOffline {
		t.Fatalf("session of a node with no heartbeat: %s, want OFFLINE", s)
	}
	beat(t, clock.Now(), c)
	if s := statusOf(t, a, "nb_n1"); s != StatusOffline {
		t.Fatalf("a looked for node-c again at once: %s", s)
	}
	clock.Advance(unknownRecheck)
	if s := statusOf(t, a, "nb_n1"); s != StatusOnline {
		t.Fatalf("session of a node that joined since a's heartbeat: %s, want ONLINE", s)
	}
}

// Before its first heartbeat a node judges no session (membership is not
// running: registries wired without heartbeats, as most tests are).
func TestClusterNoMembershipTrustsRows(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	a, b, _, _ := clusterNodes(t, clock)
	setUpRouter(t, a, clock, true)
	if _, err := b.Connected(context.Background(), "mq_m1"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	if s := statusOf(t, a, "mq_m1"); s != StatusOnline {
		t.Fatalf("without membership: %s", s)
	}
	if n, err := a.sweepDeadNodes(context.Background()); n != 0 || err != nil {
		t.Fatalf("sweep without membership: %d %v", n, err)
	}
}

// oneConnStore is a store with one connection, as an engine whose pool
// is exhausted: a transaction begun inside another waits for a
// connection its own caller holds, and fails.
type oneConnStore struct {
	kv.Store
	conn   chan struct{}
	nested *atomic.Int64 // transactions refused
}

func (s oneConnStore) take() error {
	select {
	case s.conn <- struct{}{}:
		return nil
	case <-time.After(time.Second):
		s.nested.Add(1)
		return errors.New("no free connection: a transaction began inside another")
	}
}

func (s oneConnStore) View(ctx context.Context, fn func(kv.Reader) error) error {
	if err := s.take(); err != nil {
		return err
	}
	defer func() { <-s.conn }()
	return s.Store.View(ctx, fn)
}

func (s oneConnStore) Update(ctx context.Context, fn func(kv.Txn) error) error {
	if err := s.take(); err != nil {
		return err
	}
	defer func() { <-s.conn }()
	return s.Store.Update(ctx, fn)
}

// On a cluster, where presence and membership are in the store, a
// device's first connection and a listing read them in the transaction
// they run in, never in a second one beside it.
func TestClusterNoTransactionInsideAnother(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	_, _, _, base := clusterNodes(t, clock)
	s := oneConnStore{Store: base, conn: make(chan struct{}, 1), nested: &atomic.Int64{}}
	r, err := New(Options{Store: s, MasterKey: bytes.Repeat([]byte{7}, 32), Node: "node-x", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mustProduct(t, r, "proj", "mq", "MQTT")
	for _, n := range []string{"m1", "m2"} {
		if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "mq", NodeID: n}); err != nil {
			t.Fatal(err)
		}
	}
	beat(t, clock.Now().Add(-time.Second), r)
	if _, err := r.Connected(ctx, "mq_m2"); err != nil {
		t.Fatal(err)
	}
	// mq_m2 moves to a node with no heartbeat: the listing reads it.
	if _, _, _, err := NewStorePresence(base, "node-gone").Connect(ctx, "mq_m2", clock.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Connected(ctx, "mq_m1"); err != nil { // activates: a device event with its status
		t.Fatalf("first connection: %v", err)
	}
	l, err := r.ListDevices(ctx, "proj", DeviceFilter{}, Page{Limit: 10})
	if err != nil || len(l.Devices) != 2 {
		t.Fatalf("list: %+v %v", l, err)
	}
	for _, d := range l.Devices {
		if want := map[string]Status{"mq_m1": StatusOnline, "mq_m2": StatusOffline}[d.DeviceID]; d.Status != want {
			t.Errorf("%s: %s, want %s", d.DeviceID, d.Status, want)
		}
	}
	if n := s.nested.Load(); n != 0 {
		t.Fatalf("%d transactions began inside another", n)
	}
}
