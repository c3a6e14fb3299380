package lwm2m

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/iotgate/iotgate/lwm2m/transport"
	"github.com/iotgate/iotgate/registry"
)

// AdvertiseCoAPForward is the name, among a node's advertised addresses
// (registry.NodeInfo.Advertise), of its DTLS forward listener.
const AdvertiseCoAPForward = "coap_forward"

// NodeLister lists the live nodes of the cluster with their advertised
// addresses; a *registry.Registry satisfies it.
type NodeLister interface {
	Nodes(ctx context.Context) ([]registry.NodeInfo, error)
}

// peerRefresh is how often the DTLS forwarder's list of nodes is read
// again from the heartbeats; a record for a node tag it does not know
// asks for a read sooner, at most once per peerRefreshMin.
const (
	peerRefresh    = registry.HeartbeatInterval
	peerRefreshMin = time.Second
)

// peersLoop keeps f's nodes those the heartbeats list, until the server
// stops. miss asks for an early refresh.
func (s *Server) peersLoop(f *transport.Forwarder, miss <-chan struct{}) {
	defer s.wg.Done()
	t := time.NewTicker(peerRefresh)
	defer t.Stop()
	var last time.Time
	for {
		if s.refreshPeers(f) {
			last = time.Now()
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-miss:
			if wait := peerRefreshMin - time.Since(last); wait > 0 {
				select {
				case <-s.ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
	}
}

// refreshPeers reads the live nodes into f, reporting whether it could.
func (s *Server) refreshPeers(f *transport.Forwarder) bool {
	ctx, cancel := context.WithTimeout(s.ctx, peerRefresh)
	defer cancel()
	nodes, err := s.o.Nodes.Nodes(ctx)
	if err != nil {
		if s.ctx.Err() == nil {
			s.limited.Info("dtls forwarding: node list not read", "err", err)
		}
		return false
	}
	peers, bad := forwardPeers(nodes)
	for _, n := range bad {
		s.limited.Info("dtls forwarding: node advertises a bad forward address", "node", n.Node, "addr", n.Advertise[AdvertiseCoAPForward])
	}
	for _, c := range f.SetPeers(peers) {
		s.limited.Log(context.Background(), slog.LevelError, "dtls forwarding: two nodes share a connection id tag; rename one (cluster.node_id)",
			"node", c[0], "other", c[1])
	}
	return true
}

// forwarder binds the DTLS forward listener of a node of a cluster (nil
// on a single node, or without a forward address); miss is signalled
// when a record names a node it does not know.
func (s *Server) forwarder() (*transport.Forwarder, <-chan struct{}, error) {
	if s.o.Node == "" || s.o.ForwardListen == "" || s.o.Nodes == nil {
		return nil, nil, nil
	}
	miss := make(chan struct{}, 1)
	f, err := transport.ListenForward(s.o.ForwardListen, s.o.Node, s.limited, func() {
		select {
		case miss <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return f, miss, nil
}

// forwardPeers are the nodes with their forward addresses (none for a
// node that advertises none), and the nodes whose advertised forward
// address is not an IP address and a port, left out.
func forwardPeers(nodes []registry.NodeInfo) (peers []transport.Peer, bad []registry.NodeInfo) {
	peers = make([]transport.Peer, 0, len(nodes))
	for _, n := range nodes {
		p := transport.Peer{Node: n.Node}
		if a := n.Advertise[AdvertiseCoAPForward]; a != "" {
			ap, err := netip.ParseAddrPort(a)
			if err != nil || ap.Port() == 0 {
				bad = append(bad, n)
				continue
			}
			p.Forward = ap
		}
		peers = append(peers, p)
	}
	return peers, bad
}
