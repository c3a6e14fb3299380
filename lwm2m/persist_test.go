package lwm2m_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// countingSessions counts the writes a server makes to its session store.
type countingSessions struct {
	*registry.Registry
	saves, records atomic.Int64
}

func (c *countingSessions) SaveSessionRecords(ctx context.Context, put, drop []registry.SessionRecord) error {
	c.saves.Add(1)
	c.records.Add(int64(len(put) + len(drop)))
	return c.Registry.SaveSessionRecords(ctx, put, drop)
}

// persistFixture is a store shared by registries (one per node name) and
// the servers started on them, which can be stopped and started again.
type persistFixture struct {
	t     *testing.T
	store kv.Store
	regs  map[string]*registry.Registry
	mu    sync.Mutex
	live  map[*lwm2m.Server]bool
}

func newPersistFixture(t *testing.T) *persistFixture {
	st, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: registry.Queues()})
	if err != nil {
		t.Fatal(err)
	}
	p := &persistFixture{t: t, store: st, regs: map[string]*registry.Registry{}, live: map[*lwm2m.Server]bool{}}
	t.Cleanup(func() {
		for s := range p.live {
			p.stop(s)
		}
		for _, r := range p.regs {
			r.Close()
		}
		st.Close()
	})
	return p
}

// reg returns the registry of node ("" for a single node), made on first use.
func (p *persistFixture) reg(node string) *registry.Registry {
	if r := p.regs[node]; r != nil {
		return r
	}
	r, err := registry.New(registry.Options{Store: p.store, MasterKey: bytes.Repeat([]byte{1}, 32), Node: node})
	if err != nil {
		p.t.Fatal(err)
	}
	if len(p.regs) == 0 {
		if _, err := r.CreateProduct(context.Background(), registry.Product{ProjectID: "p", ProductID: "nb", Name: "NB", DeviceType: "Meter", ProtocolType: "CoAP"}); err != nil {
			p.t.Fatal(err)
		}
	}
	p.regs[node] = r
	return r
}

func (p *persistFixture) device(name string, secure bool) *registry.Device {
	d, err := p.reg("").CreateDevice(context.Background(), registry.NewDevice{ProjectID: "p", NodeID: name, ProductID: "nb",
		Auth: registry.AuthInfo{Secret: secret, SecureAccess: secure}})
	if err != nil {
		p.t.Fatal(err)
	}
	return d
}

// start runs a server of node on the given addresses ("127.0.0.1:0" for
// new ones), saving registrations through sessions (the node's registry
// when nil).
func (p *persistFixture) start(node, udp, dtls string, sessions lwm2m.SessionStore) *lwm2m.Server {
	reg := p.reg(node)
	if sessions == nil {
		sessions = reg
	}
	s, err := lwm2m.New(lwm2m.Options{Registry: reg, Node: node, Listen: udp, DTLSListen: dtls, Sessions: sessions,
		SaveInterval: 50 * time.Millisecond, RequestTimeout: 3 * time.Second, SweepInterval: 50 * time.Millisecond, MinLifetime: time.Second})
	if err != nil {
		p.t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		p.t.Fatal(err)
	}
	reg.AddKicker(s)
	p.mu.Lock()
	p.live[s] = true
	p.mu.Unlock()
	return s
}

func (p *persistFixture) stop(s *lwm2m.Server) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.live[s] {
		return
	}
	delete(p.live, s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		p.t.Errorf("shutdown: %v", err)
	}
}

func dial(t *testing.T, cfg lwm2mclient.Config) *lwm2mclient.Client {
	t.Helper()
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 3 * time.Second
	}
	c, err := lwm2mclient.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// stored waits until the registration at loc is in the store.
func stored(t *testing.T, reg *registry.Registry, loc string) registry.SessionRecord {
	t.Helper()
	id := strings.TrimPrefix(loc, "/rd/")
	var rec registry.SessionRecord
	eventually(t, "registration "+id+" stored", func() bool {
		var ok bool
		rec, ok = recordOf(t, reg, id)
		return ok
	})
	return rec
}

// recordOf finds the stored record of reg's node whose handle is id (a
// single node keeps no handle index: its records are listed).
func recordOf(t *testing.T, reg *registry.Registry, id string) (registry.SessionRecord, bool) {
	t.Helper()
	var rec registry.SessionRecord
	var found bool
	if err := reg.SessionRecords(context.Background(), func(r registry.SessionRecord) bool {
		rec, found = r, r.Handle == id
		return !found
	}); err != nil {
		t.Fatal(err)
	}
	return rec, found
}

// update sends an Update to the registration at loc through c (which may
// be a new client of the device) and returns the answer's code.
func update(t *testing.T, c *lwm2mclient.Client, loc string) codes.Code {
	t.Helper()
	resp, err := c.Do(context.Background(), codes.POST, loc, nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Code
}

func TestRegistrationsSurviveRestart(t *testing.T) {
	p := newPersistFixture(t)
	nosec, dtls := p.device("keep-nosec", false), p.device("keep-dtls", true)
	a := p.start("", "127.0.0.1:0", "127.0.0.1:0", nil)
	udpAddr, dtlsAddr := a.UDPAddr().String(), a.DTLSAddr().String()
	ctx := context.Background()

	c := dial(t, lwm2mclient.Config{Server: udpAddr, Endpoint: "keep-nosec", Lifetime: 300})
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	key := lwm2m.PSK(secret)
	dc := dial(t, lwm2mclient.Config{Server: dtlsAddr, Endpoint: "keep-dtls", PSKIdentity: "keep-dtls", PSK: key, ConnectionID: true, Lifetime: 300})
	if err := dc.Register(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the /19/0/0 observation", func() bool { return c.Observed("/19/0/0") })
	rec := stored(t, p.reg(""), c.Location())
	stored(t, p.reg(""), dc.Location())
	if rec.DeviceID != nosec.DeviceID {
		t.Fatalf("record of %s, want %s", rec.DeviceID, nosec.DeviceID)
	}
	// The observation is in the record too.
	eventually(t, "the observation stored", func() bool {
		rec = stored(t, p.reg(""), c.Location())
		return bytes.Contains(rec.Data, []byte{0x26, 0x00, 0x00, 0x01}) // varints of 19, 0, 0, -1
	})

	p.stop(a)
	if st := p.status(nosec.DeviceID); st != registry.StatusOnline {
		t.Fatalf("after a clean shutdown the device is %s, want ONLINE", st)
	}
	b := p.start("", udpAddr, dtlsAddr, nil)
	if b.Registered() != 2 {
		t.Fatalf("%d registrations restored, want 2", b.Registered())
	}
	if err := c.Update(ctx); err != nil {
		t.Fatalf("NoSec Update after the restart: %v", err)
	}
	// The DTLS client handshakes again (its session did not survive),
	// and updates the registration it had, without registering.
	dc2 := dial(t, lwm2mclient.Config{Server: dtlsAddr, Endpoint: "keep-dtls", PSKIdentity: "keep-dtls", PSK: key, ConnectionID: true})
	if code := update(t, dc2, dc.Location()); code != codes.Changed {
		t.Fatalf("DTLS Update after the restart: %v", code)
	}
	for _, d := range []*registry.Device{nosec, dtls} {
		if _, ok := b.Registration(d.DeviceID); !ok {
			t.Fatalf("%s not registered after the restart", d.DeviceID)
		}
		if st := p.status(d.DeviceID); st != registry.StatusOnline {
			t.Fatalf("%s is %s after the restart", d.DeviceID, st)
		}
	}
	// Both are reachable: the NoSec one at its address, the DTLS one on
	// its new session.
	for _, d := range []*registry.Device{nosec, dtls} {
		resp, err := b.Perform(ctx, d.DeviceID, lwm2m.Operation{Name: lwm2m.OpRead, Path: format.NewPath(3, 0, 0), Accept: -1})
		if err != nil || resp.Code != codes.Content {
			t.Fatalf("READ of %s after the restart: %v %+v", d.DeviceID, err, resp)
		}
	}
	// The restored observation matches the client's next notification.
	if err := c.SendData([]byte("after restart")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the notification stored", func() bool {
		msgs, err := p.reg("").Messages(ctx, "p", nosec.DeviceID, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if string(m.Payload) == "after restart" {
				return true
			}
		}
		return false
	})

	// De-register deletes the record; the next start restores nothing of it.
	if err := c.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the record deleted", func() bool {
		_, found := recordOf(t, p.reg(""), strings.TrimPrefix(c.Location(), "/rd/"))
		return !found
	})
	p.stop(b)
	b2 := p.start("", udpAddr, dtlsAddr, nil)
	if b2.Registered() != 1 {
		t.Fatalf("%d registrations restored, want 1 (the DTLS one)", b2.Registered())
	}
}

func (p *persistFixture) status(id string) registry.Status {
	d, err := p.reg("").Device(context.Background(), id)
	if err != nil {
		p.t.Fatal(err)
	}
	return d.Status
}

func TestRegistrationsWrittenBehindInBatches(t *testing.T) {
	p := newPersistFixture(t)
	const n = 60
	for i := range n {
		p.device(fmt.Sprintf("batch-%02d", i), false)
	}
	cs := &countingSessions{Registry: p.reg("")}
	s := p.start("", "127.0.0.1:0", "", cs)
	ctx := context.Background()
	clients := make([]*lwm2mclient.Client, n)
	var wg sync.WaitGroup
	for i := range clients {
		clients[i] = dial(t, lwm2mclient.Config{Server: s.UDPAddr().String(), Endpoint: fmt.Sprintf("batch-%02d", i), Lifetime: 300,
			Objects: "</1/0>,</3/0>"})
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := clients[i].Register(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, c := range clients {
		stored(t, p.reg(""), c.Location())
	}
	// 60 Registers in a few rounds of the 50 ms save loop, not 60 writes.
	if got := cs.saves.Load(); got > n/4 {
		t.Fatalf("%d store writes for %d Registers", got, n)
	}
	// An Update that changes nothing stored writes nothing (the stored
	// expiry is less than half a lifetime behind).
	time.Sleep(120 * time.Millisecond)
	before := cs.records.Load()
	for _, c := range clients[:10] {
		if err := c.Update(ctx); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if got := cs.records.Load() - before; got != 0 {
		t.Fatalf("%d records written for Updates that changed nothing", got)
	}
	// A new lifetime is stored.
	if err := clients[0].Update(ctx, "lt=600"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new lifetime stored", func() bool { return cs.records.Load() > before })

	// A re-registration replaces the device's record: one record written,
	// the ended registration not deleted on its own.
	time.Sleep(120 * time.Millisecond)
	old := clients[1].Location()
	before = cs.records.Load()
	if err := clients[1].Register(ctx); err != nil {
		t.Fatal(err)
	}
	stored(t, p.reg(""), clients[1].Location())
	time.Sleep(120 * time.Millisecond)
	if got := cs.records.Load() - before; got != 1 {
		t.Fatalf("%d records written for a re-registration, want 1", got)
	}
	if _, found := recordOf(t, p.reg(""), strings.TrimPrefix(old, "/rd/")); found {
		t.Fatal("the ended registration's record is still stored")
	}
}

func TestExpiredRegistrationEndsAfterRestart(t *testing.T) {
	p := newPersistFixture(t)
	d := p.device("short", false)
	a := p.start("", "127.0.0.1:0", "", nil)
	c := dial(t, lwm2mclient.Config{Server: a.UDPAddr().String(), Endpoint: "short", Lifetime: 1})
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	stored(t, p.reg(""), c.Location())
	p.stop(a)
	time.Sleep(1100 * time.Millisecond)
	b := p.start("", "127.0.0.1:0", "", nil)
	eventually(t, "the expired registration ended", func() bool { return b.Registered() == 0 })
	eventually(t, "the record deleted", func() bool {
		_, found := recordOf(t, p.reg(""), strings.TrimPrefix(c.Location(), "/rd/"))
		return !found
	})
	eventually(t, "the device offline", func() bool { return p.status(d.DeviceID) == registry.StatusOffline })
}

func TestUpdateAdoptedByAnotherNode(t *testing.T) {
	p := newPersistFixture(t)
	d := p.device("roamer", false)
	p.device("roamer-dtls", true)
	n1 := p.start("n1", "127.0.0.1:0", "127.0.0.1:0", nil)
	n2 := p.start("n2", "127.0.0.1:0", "127.0.0.1:0", nil)
	ctx := context.Background()

	c := dial(t, lwm2mclient.Config{Server: n1.UDPAddr().String(), Endpoint: "roamer", Lifetime: 300})
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	rec := stored(t, p.reg("n1"), c.Location())
	if rec.Node != "n1" {
		t.Fatalf("record of node %q", rec.Node)
	}
	// A DTLS client of another device cannot take the registration over,
	// nor can a NoSec client take a DTLS one.
	key := lwm2m.PSK(secret)
	other := dial(t, lwm2mclient.Config{Server: n2.DTLSAddr().String(), Endpoint: "roamer-dtls", PSKIdentity: "roamer-dtls", PSK: key})
	if code := update(t, other, c.Location()); code != codes.Forbidden {
		t.Fatalf("another identity's Update: %v", code)
	}
	if _, ok := n2.Registration(d.DeviceID); ok {
		t.Fatal("a refused Update moved the registration")
	}
	// The load balancer sends the device's next datagram to node 2.
	c2 := dial(t, lwm2mclient.Config{Server: n2.UDPAddr().String(), Endpoint: "roamer"})
	if code := update(t, c2, c.Location()); code != codes.Changed {
		t.Fatalf("Update at node 2: %v, want 2.04", code)
	}
	if _, ok := n2.Registration(d.DeviceID); !ok {
		t.Fatal("node 2 holds no registration")
	}
	rec = stored(t, p.reg("n2"), c.Location())
	if rec.Node != "n2" {
		t.Fatalf("record of node %q, want n2", rec.Node)
	}
	resp, err := n2.Perform(ctx, d.DeviceID, lwm2m.Operation{Name: lwm2m.OpRead, Path: format.NewPath(3, 0, 0), Accept: -1})
	if err != nil || resp.Code != codes.Content {
		t.Fatalf("READ through node 2: %v %+v", err, resp)
	}
	// Node 1 drops its copy (here by hand: no bus links the registries);
	// its deletion leaves node 2's record alone, and the device online.
	n1.Kick(d.DeviceID, "taken over")
	time.Sleep(150 * time.Millisecond)
	if _, err := p.reg("n2").SessionRecordByHandle(ctx, rec.Handle); err != nil {
		t.Fatalf("node 1's deletion removed node 2's record: %v", err)
	}
	if got, _ := p.reg("n2").Device(ctx, d.DeviceID); got.Status != registry.StatusOnline {
		t.Fatalf("device %s after node 1 dropped its copy", got.Status)
	}
	// De-register at node 2 deletes the shared record.
	if resp, err := c2.Do(ctx, codes.DELETE, c.Location(), nil, 0, nil); err != nil || resp.Code != codes.Deleted {
		t.Fatalf("De-register at node 2: %v %v", err, resp.Code)
	}
	eventually(t, "the record deleted", func() bool {
		_, err := p.reg("n2").SessionRecordByHandle(ctx, rec.Handle)
		return errors.Is(err, registry.ErrNotFound)
	})
	// An unknown id still gets 4.04.
	if code := update(t, c2, "/rd/nosuchregistration"); code != codes.NotFound {
		t.Fatalf("unknown registration: %v", code)
	}
}
