package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/iotgate/iotgate/lwm2m/ratelog"
)

// Forwarder carries DTLS datagrams between the nodes of a cluster, as
// Californium's cluster support does: a node that receives a record
// whose Connection ID another node issued (its tag, see TagOf) sends the
// datagram, with the device's address, to that node's forward listener;
// the owner processes it as if the device had sent it there, and sends
// its answers back through the receiving node, which writes them to the
// device from its public socket. A device's datagrams may so reach any
// node (a non-sticky UDP load balancer), and its answers come from the
// address it sent to.
//
// The forward listener is on the cluster's private network: it takes
// frames only from the forward addresses of the nodes it knows
// (SetPeers), and writes to a device only what a known node framed, one
// datagram for one frame, never larger.
//
// One goroutine reads the forward listener; frames from devices go
// through the DTLS mux's routing like datagrams from its own socket.
type Forwarder struct {
	conn  *net.UDPConn
	node  string
	self  NodeTag
	peers atomic.Pointer[peerTable]
	mux   atomic.Pointer[udpMux]
	// dropped logs dropped datagrams and refused frames, under a budget.
	dropped *ratelog.Logger
	// unknown, when set, is told that a record named a node tag no known
	// peer has, or a frame came from an address no known peer has: the
	// peer list may be stale.
	unknown func()
	bufs    sync.Pool
	once    sync.Once
}

// Peer is another node of the cluster: its name and the address its
// forward listener receives at (and sends from).
type Peer struct {
	Node    string
	Forward netip.AddrPort
}

type peerTable struct {
	byTag  map[NodeTag]*peer
	byAddr map[netip.AddrPort]*peer
}

type peer struct {
	Peer
	// path sends to a device through this peer (the answer path of the
	// datagrams it forwards).
	path *answerPath
}

// ListenForward binds the forward listener of the node named node at
// addr, an address the other nodes reach it at. dropped logs what it
// drops; unknown (may be nil) is told when a record names a node tag no
// peer has, or a frame comes from an address no peer has.
func ListenForward(addr, node string, dropped *ratelog.Logger, unknown func()) (*Forwarder, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("forward listen %s: %w", addr, err)
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("forward listen %s: %w", addr, err)
	}
	if err := pc.SetReadBuffer(ReadBuffer); err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("forward listen %s: receive buffer: %w", addr, err)
	}
	f := &Forwarder{conn: pc, node: node, self: TagOf(node), dropped: dropped, unknown: unknown}
	f.bufs.New = func() any { b := make([]byte, 0, fwdHeaderMax+maxDatagram); return &b }
	f.peers.Store(&peerTable{})
	return f, nil
}

// Addr is the bound forward address.
func (f *Forwarder) Addr() net.Addr { return f.conn.LocalAddr() }

// Tag is this node's tag.
func (f *Forwarder) Tag() NodeTag { return f.self }

// SetPeers replaces the known nodes (this node among them or not). It
// returns the pairs of node names that share a tag (this node's
// included): records for such a tag go to the first of the pair by name,
// or stay here when this node is one of them, and the operator must
// rename one.
func (f *Forwarder) SetPeers(peers []Peer) (clashes [][2]string) {
	t := &peerTable{byTag: make(map[NodeTag]*peer, len(peers)), byAddr: make(map[netip.AddrPort]*peer, len(peers))}
	old := f.peers.Load()
	peers = slices.Clone(peers)
	slices.SortFunc(peers, func(a, b Peer) int {
		switch {
		case a.Node < b.Node:
			return -1
		case a.Node > b.Node:
			return 1
		}
		return 0
	})
	for _, p := range peers {
		tag := TagOf(p.Node)
		if tag == f.self {
			if p.Node != f.node {
				clashes = append(clashes, [2]string{f.node, p.Node})
			}
			continue
		}
		if !p.Forward.IsValid() {
			continue
		}
		p.Forward = unmapped(p.Forward)
		e := old.byAddr[p.Forward]
		if e == nil || e.Peer != p {
			e = &peer{Peer: p, path: &answerPath{via: p.Forward}}
		}
		if prev := t.byTag[tag]; prev != nil {
			clashes = append(clashes, [2]string{prev.Node, p.Node})
		} else {
			t.byTag[tag] = e
		}
		t.byAddr[p.Forward] = e
	}
	f.peers.Store(t)
	return clashes
}

// attach starts reading frames for m.
func (f *Forwarder) attach(m *udpMux) {
	f.mux.Store(m)
	go f.readLoop(m)
}

// Close closes the forward listener.
func (f *Forwarder) Close() error {
	var err error
	f.once.Do(func() { err = f.conn.Close() })
	return err
}

// owns reports whether tag is this node's.
func (f *Forwarder) owns(tag NodeTag) bool { return tag == f.self }

// toOwner sends datagram b, received from the device at dev, to the node
// whose tag its Connection ID carries.
func (f *Forwarder) toOwner(b []byte, dev netip.AddrPort, tag NodeTag) {
	p := f.peers.Load().byTag[tag]
	if p == nil {
		f.dropped.Info("dtls record for an unknown node dropped", "addr", dev.String(), "node_tag", fmt.Sprintf("%04x", uint16(tag)))
		if f.unknown != nil {
			f.unknown()
		}
		return
	}
	f.send(fwdFromDevice, b, dev, p.Forward)
}

// toDevice sends datagram b to the device at dev through the node at
// via, the one its last datagram came in at.
func (f *Forwarder) toDevice(b []byte, dev, via netip.AddrPort) error {
	return f.send(fwdToDevice, b, dev, via)
}

func (f *Forwarder) send(k fwdKind, b []byte, dev, to netip.AddrPort) error {
	if len(b) > maxDatagram {
		return errFrameLarge
	}
	bp := f.bufs.Get().(*[]byte)
	fr := appendFrame((*bp)[:0], k, dev, b)
	_, err := f.conn.WriteToUDPAddrPort(fr, to)
	*bp = fr
	f.bufs.Put(bp)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		f.dropped.Info("dtls datagram not forwarded", "node", to.String(), "err", err)
	}
	return err
}

// readLoop takes the frames of the known nodes: a device's datagram goes
// through m's routing as if it came to its socket (never forwarded
// again), an answer goes to the device from m's socket.
func (f *Forwarder) readLoop(m *udpMux) {
	buf := make([]byte, fwdHeaderMax+maxDatagram+1)
	for {
		n, src, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		src = unmapped(src)
		p := f.peers.Load().byAddr[src]
		if p == nil {
			// A node that just joined, or a stranger: the peer list is
			// read again (at most once a second) in case it is the former.
			f.dropped.Info("forward frame from an unknown node refused", "from", src.String())
			if f.unknown != nil {
				f.unknown()
			}
			continue
		}
		k, dev, b, err := parseFrame(buf[:n])
		if err != nil {
			f.dropped.Info("forward frame refused", "from", src.String(), "node", p.Node, "err", err)
			continue
		}
		switch k {
		case fwdFromDevice:
			m.forwarded(b, dev, p.path)
		case fwdToDevice:
			if err := m.sock.write(context.Background(), b, dev, nil); err != nil && !errors.Is(err, net.ErrClosed) {
				f.dropped.Info("forwarded dtls answer not sent", "addr", dev.String(), "err", err)
			}
		}
	}
}
