package lwm2m_test

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/guard"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// countingSecurity counts the lookups of the security store.
type countingSecurity struct {
	lwm2m.SecurityStore
	n atomic.Int64
}

func (c *countingSecurity) DeviceByEndpoint(ctx context.Context, ep string) (*registry.Device, error) {
	c.n.Add(1)
	return c.SecurityStore.DeviceByEndpoint(ctx, ep)
}

// Refused NoSec Registers count towards the guard's bans: an endpoint
// guessed too often is banned, and its later Registers are refused with
// the same bare 4.03 before any lookup; a banned address is refused for
// every endpoint, even a real one.
func TestLwM2MGuardBansGuessedEndpoints(t *testing.T) {
	g := guard.NewLocal(guard.Config{
		IdentityFailures: guard.Window{Max: 3, Window: time.Minute, Ban: time.Minute},
		AddressFailures:  guard.Window{Max: 100, Window: time.Minute, Ban: time.Minute},
		MaxTracked:       1000, MaxBans: 100, MaxManualBans: 10,
	})
	var sec *countingSecurity
	f := newFixture(t, func(o *lwm2m.Options) {
		o.Guard = g
		sec = &countingSecurity{SecurityStore: lwm2m.RegistrySecurity{Registry: o.Registry}}
		o.Security = sec
	})
	f.device("real", false)
	register := func(ep string) []byte {
		t.Helper()
		ans := rawExchange(t, f.srv.UDPAddr(), rawRegister(t, ep), 2*time.Second)
		if ans == nil {
			t.Fatalf("no answer to the Register of %s", ep)
		}
		return ans
	}
	first := register("ghost")
	for range 2 {
		register("ghost")
	}
	if !g.IdentityBanned("ghost") {
		t.Fatal("3 refused Registers of one endpoint did not ban it")
	}
	before := sec.n.Load()
	if ans := register("ghost"); string(ans) != string(first) {
		t.Fatalf("a banned endpoint's Register answered %x, the refusals %x", ans, first)
	}
	if n := sec.n.Load() - before; n != 0 {
		t.Fatalf("a banned endpoint's Register made %d store lookups", n)
	}
	// The real device is not affected by another endpoint's ban...
	m := message.Message{Options: make(message.Options, 0, 16)}
	if _, err := coder.DefaultCoder.Decode(register("real"), &m); err != nil || m.Code != codes.Created {
		t.Fatalf("the real endpoint's Register: %v (%v), want 2.01", m.Code, err)
	}
	// ...but a banned address is refused for every endpoint.
	if err := g.Ban(context.Background(), guard.Ban{Target: guard.Target{Prefix: netip.MustParsePrefix("127.0.0.1/32")},
		Reason: "test", Expires: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	before = sec.n.Load()
	if ans := register("real"); string(ans) != string(first) {
		t.Fatalf("a banned address's Register answered %x, want the bare 4.03 %x", ans, first)
	}
	if n := sec.n.Load() - before; n != 0 {
		t.Fatalf("a banned address's Register made %d store lookups", n)
	}
}

// DTLS: a banned PSK identity fails its handshake before its key is
// looked up (the right key does not help), and a banned address gets no
// answer at all to its ClientHello, not even a HelloVerifyRequest; both
// handshake again once the ban is lifted.
func TestLwM2MGuardBansDTLS(t *testing.T) {
	g := guard.NewLocal(guard.Config{MaxTracked: 1000, MaxBans: 100, MaxManualBans: 10})
	var sec *countingSecurity
	f := newFixture(t, func(o *lwm2m.Options) {
		o.Guard = g
		sec = &countingSecurity{SecurityStore: lwm2m.RegistrySecurity{Registry: o.Registry}}
		o.Security = sec
	})
	f.device("dtlsban", true)
	ctx := context.Background()
	cfg := lwm2mclient.Config{Endpoint: "dtlsban", PSKIdentity: "dtlsban", PSK: lwm2m.PSK(secret),
		Server: f.srv.DTLSAddr().String(), RequestTimeout: 2 * time.Second}
	handshake := func() error {
		c, err := lwm2mclient.Dial(ctx, cfg)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := handshake(); err != nil {
		t.Fatalf("before any ban: %v", err)
	}
	ban := func(target guard.Target) {
		t.Helper()
		if err := g.Ban(ctx, guard.Ban{Target: target, Reason: "test", Expires: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}

	ban(guard.Target{Identity: "dtlsban"})
	before := sec.n.Load()
	if err := handshake(); err == nil {
		t.Fatal("a banned PSK identity completed its handshake")
	}
	if n := sec.n.Load() - before; n != 0 {
		t.Fatalf("a banned identity's handshake made %d key lookups", n)
	}
	if err := g.Unban(ctx, guard.Target{Identity: "dtlsban"}); err != nil {
		t.Fatal(err)
	}
	if err := handshake(); err != nil {
		t.Fatalf("after the identity's ban was lifted: %v", err)
	}

	// A banned address: its ClientHello is dropped unanswered.
	addr := netip.MustParsePrefix("127.0.0.1/32")
	ban(guard.Target{Prefix: addr})
	conn, err := net.Dial("udp", f.srv.DTLSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(firstClientHello()); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := conn.Read(make([]byte, 2048)); err == nil {
		t.Fatalf("a banned address's ClientHello drew %d bytes", n)
	}
	if err := g.Unban(ctx, guard.Target{Prefix: addr}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(firstClientHello()); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(make([]byte, 2048)); err != nil {
		t.Fatalf("after the address's ban was lifted, the ClientHello drew no HelloVerifyRequest: %v", err)
	}
}
