package test

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
)

// roundRobinRelay stands for a UDP load balancer without stickiness in
// front of several nodes: it sends each datagram of its one client to
// the next node in turn, from one source address, and passes whatever
// any node sends back to the client. It counts both ways.
type roundRobinRelay struct {
	front *net.UDPConn
	up    *net.UDPConn
	nodes []netip.AddrPort

	mu     sync.Mutex
	client netip.AddrPort
	next   int
	sent   int                    // client datagrams passed on
	down   map[netip.AddrPort]int // datagrams passed back, by node
}

func newRoundRobinRelay(t *testing.T, nodes ...string) *roundRobinRelay {
	t.Helper()
	r := &roundRobinRelay{down: make(map[netip.AddrPort]int)}
	for _, n := range nodes {
		r.nodes = append(r.nodes, netip.MustParseAddrPort(n))
	}
	var err error
	if r.front, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	if r.up, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.front.Close(); r.up.Close() })
	go r.forwardUp()
	go r.forwardDown()
	return r
}

// Addr is where the client sends.
func (r *roundRobinRelay) Addr() string { return r.front.LocalAddr().String() }

func (r *roundRobinRelay) forwardUp() {
	buf := make([]byte, 65536)
	for {
		n, from, err := r.front.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.client = from
		to := r.nodes[r.next]
		r.next = (r.next + 1) % len(r.nodes)
		r.sent++
		r.mu.Unlock()
		_, _ = r.up.WriteToUDPAddrPort(buf[:n], to)
	}
}

func (r *roundRobinRelay) forwardDown() {
	buf := make([]byte, 65536)
	for {
		n, from, err := r.up.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		client := r.client
		r.down[from]++
		r.mu.Unlock()
		if client.IsValid() {
			_, _ = r.front.WriteToUDPAddrPort(buf[:n], client)
		}
	}
}

// counts are the client datagrams passed on so far, and the datagrams
// passed back from each node.
func (r *roundRobinRelay) counts() (sent int, down []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.nodes {
		down = append(down, r.down[n])
	}
	return r.sent, down
}

// The last done-when: a DTLS device with a Connection ID behind a
// UDP relay that alternates its datagrams between two nodes registers,
// updates and answers a READ. Each node forwards the records whose CID
// the other issued to it, and relays its answers: every Update takes one
// datagram (no retransmission after one went to the wrong node), and
// answers reach the device from both nodes' addresses.
func TestClusterDTLSConnectionIDForwarding(t *testing.T) {
	gates := newCluster(t, 2, clusterOptions{forward: true}).gates
	g1, g2 := gates[0], gates[1]
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node 1:\n%s\nnode 2:\n%s", g1.Logs(), g2.Logs())
		}
	})
	g1.CreateProduct("nb", "CoAP")
	dev := lwm2mDevice(t, g1, "roamer-cluster", true, nil)
	// Each node lists the other with its forward address within a
	// heartbeat; until then a forwarded record would be dropped (and
	// retransmitted).
	for _, g := range gates {
		waitNodes(t, g, 2)
	}

	relay := newRoundRobinRelay(t, g1.DTLS, g2.DTLS)
	c := goClient(t, g1, lwm2mclient.Config{Server: relay.Addr(), Endpoint: "roamer-cluster", Lifetime: 60,
		PSKIdentity: "roamer-cluster", PSK: []byte(pskText), ConnectionID: true, RequestTimeout: 10 * time.Second})
	ctx := context.Background()
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	waitDeviceStatus(t, g2, dev, "ONLINE")

	// Alternating, each Update's datagram reaches the other node than the
	// last one did; without forwarding, every one that reached the node
	// without the session would be dropped and retransmitted (to the
	// other), two datagrams an Update.
	const updates = 6
	before, downBefore := relay.counts()
	for i := range updates {
		if err := c.Update(ctx); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	after, down := relay.counts()
	for i := range down {
		down[i] -= downBefore[i]
	}
	// One retransmission is allowed for a machine too loaded to answer
	// within the client's first second.
	if sent := after - before; sent > updates+1 {
		t.Fatalf("%d updates took %d datagrams: records for the other node's CID were not forwarded", updates, sent)
	}
	if down[0] == 0 || down[1] == 0 {
		t.Fatalf("answers to the updates came back from node 1 %d times, from node 2 %d times: the receiving node must relay them", down[0], down[1])
	}

	// A READ through the REST API of either node reaches the device on the
	// node that holds its session, and the device's answer, wherever the
	// relay sends it, gets back to that node.
	for _, g := range gates {
		id := asyncCommand(t, g, dev, map[string]any{"service_id": "LwM2M", "command_name": "READ",
			"paras": map[string]any{"path": "/3/0/2"}, "send_strategy": "immediately"})
		res := waitCommand(t, g, dev, id, "SUCCESSFUL")["result"].(map[string]any)
		if v := res["values"].([]any)[0].(map[string]any)["value"]; v != "roamer-cluster" {
			t.Fatalf("READ through %s: %v", g.API, res)
		}
	}
}

// waitNodes waits until g lists n live nodes, each advertising its DTLS
// forward listener.
func waitNodes(t *testing.T, g *Gate, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		nodes := g.MustDo(200, "GET", g.P("/cluster/nodes"), nil)["nodes"].([]any)
		if len(nodes) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s lists %d nodes, want %d: %v", g.API, len(nodes), n, nodes)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
