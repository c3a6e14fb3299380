package test

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
)

// natRelay stands for a NAT between a client and the gate: the client
// talks to front, the gate sees the relay's upstream socket, and rebind
// moves the upstream to a new source port, as a NAT binding that expired
// during an NB-IoT sleep does.
type natRelay struct {
	t      *testing.T
	front  *net.UDPConn
	target *net.UDPAddr

	mu     sync.Mutex
	up     *net.UDPConn
	client net.Addr
}

func newNATRelay(t *testing.T, target string) *natRelay {
	t.Helper()
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &natRelay{t: t, front: front, target: ta}
	r.rebind()
	go r.forwardUp()
	t.Cleanup(func() {
		front.Close()
		r.mu.Lock()
		r.up.Close()
		r.mu.Unlock()
	})
	return r
}

// Addr is where the client sends.
func (r *natRelay) Addr() string { return r.front.LocalAddr().String() }

// upstreamAddr is the source address the gate currently sees.
func (r *natRelay) upstreamAddr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up.LocalAddr().String()
}

// rebind replaces the upstream socket: later datagrams reach the gate from
// a new source port.
func (r *natRelay) rebind() {
	up, err := net.DialUDP("udp", nil, r.target)
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	old := r.up
	r.up = up
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
	go r.forwardDown(up)
}

func (r *natRelay) forwardUp() {
	buf := make([]byte, 65536)
	for {
		n, from, err := r.front.ReadFrom(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.client = from
		up := r.up
		r.mu.Unlock()
		_, _ = up.Write(buf[:n])
	}
}

func (r *natRelay) forwardDown(up *net.UDPConn) {
	buf := make([]byte, 65536)
	for {
		n, err := up.Read(buf)
		if err != nil {
			return // closed by rebind or cleanup
		}
		r.mu.Lock()
		client := r.client
		r.mu.Unlock()
		if client != nil {
			_, _ = r.front.WriteTo(buf[:n], client)
		}
	}
}

// TestLwM2MDTLSConnectionIDSurvivesNATRebinding: a DTLS client that
// negotiated a Connection ID keeps its session when its source port
// changes mid-session: its Update is accepted without a new handshake
// and the platform reaches it at its new address.
func TestLwM2MDTLSConnectionIDSurvivesNATRebinding(t *testing.T) {
	g := startLwM2MGate(t)
	dev := lwm2mDevice(t, g, "roamer-1", true, nil)
	relay := newNATRelay(t, g.DTLS)
	c := goClient(t, g, lwm2mclient.Config{Server: relay.Addr(), Endpoint: "roamer-1", Lifetime: 60,
		PSKIdentity: "roamer-1", PSK: []byte(pskText), ConnectionID: true})
	ctx := context.Background()
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	waitDeviceStatus(t, g, dev, "ONLINE")

	before := relay.upstreamAddr()
	relay.rebind()
	if after := relay.upstreamAddr(); after == before {
		t.Fatalf("relay did not change its source address (%s)", after)
	}
	// Same DTLS session (the client does not handshake again), new
	// address: only Connection ID routing lets this through.
	if err := c.Update(ctx); err != nil {
		t.Fatalf("update after the NAT rebinding: %v", err)
	}
	id := asyncCommand(t, g, dev, map[string]any{"service_id": "LwM2M", "command_name": "READ",
		"paras": map[string]any{"path": "/3/0/2"}, "send_strategy": "immediately"})
	res := waitCommand(t, g, dev, id, "SUCCESSFUL")["result"].(map[string]any)
	if v := res["values"].([]any)[0].(map[string]any)["value"]; v != "roamer-1" {
		t.Fatalf("READ after rebinding: %v", res)
	}
	if d := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+dev), nil); d["status"] != "ONLINE" {
		t.Fatalf("device %v", d)
	}
}
