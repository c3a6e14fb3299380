package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// Cluster membership: each node of a cluster writes a heartbeat record
// (nd/{node}) every HeartbeatInterval, and a node whose last heartbeat is
// older than NodeLiveness is no longer listed. A single node (Options.Node
// "") writes none: its store is its own, so the record would cost a
// durable write every few seconds and tell nobody anything; it keeps its
// last heartbeat in memory and lists itself as LocalNode.

// HeartbeatInterval is how often a node writes its heartbeat.
const HeartbeatInterval = 5 * time.Second

// NodeLiveness is how long a node stays listed after its last heartbeat:
// three missed heartbeats. Nodes' clocks must agree to well within it.
const NodeLiveness = 3 * HeartbeatInterval

// LocalNode is the name Nodes gives a single node.
const LocalNode = "local"

// NodeInfo is one node's heartbeat.
type NodeInfo struct {
	Node    string    `json:"node"`
	Started time.Time `json:"started"`
	// Seen is when the node last wrote its heartbeat.
	Seen time.Time `json:"seen"`
	// Devices counts the devices with a live session on the node, per
	// protocol (Protocol's names: "MQTT", "LwM2M").
	Devices map[string]int `json:"devices"`
	// Advertise are the addresses the other nodes reach this one at, per
	// listener (cluster.advertise: e.g. "coap_forward", its DTLS forward
	// listener).
	Advertise map[string]string `json:"advertise,omitempty"`
}

// Heartbeat records that this node is alive, with n's start time and
// device counts; Node and Seen are filled in. On a cluster it writes the
// node's heartbeat record, on a single node it only keeps n in memory.
func (r *Registry) Heartbeat(ctx context.Context, n NodeInfo) error {
	n.Seen = r.now()
	if r.node == "" {
		n.Node = LocalNode
		r.beat.Store(&n)
		return nil
	}
	n.Node = r.node
	b, err := json.Marshal(&n)
	if err != nil {
		return fmt.Errorf("encode heartbeat: %w", err)
	}
	var prev *NodeInfo // a previous run's heartbeat, left by a crash
	werr := r.write(ctx, func(w Writer) error {
		prev = nil
		switch v, err := w.Get(nodeBeatKey(r.node)); {
		case errors.Is(err, kv.ErrNotFound):
		case err != nil:
			return err
		default:
			var old NodeInfo
			if json.Unmarshal(v, &old) == nil && !old.Started.Equal(n.Started) {
				prev = &old
			}
		}
		return w.Set(nodeBeatKey(r.node), b)
	})
	if werr == nil && prev != nil {
		r.members.previous.Store(&deadSweep{node: r.node, seen: prev.Seen, before: n.Started})
	}
	// The membership that judges other nodes' sessions (liveness.go) is
	// read with each heartbeat, written or not.
	rerr := r.refreshMembers(ctx, n)
	if werr != nil {
		return fmt.Errorf("heartbeat: %w", werr)
	}
	return rerr
}

// Leave deletes this node's heartbeat (a planned shutdown), so the other
// nodes stop listing it at once rather than after NodeLiveness.
func (r *Registry) Leave(ctx context.Context) error {
	if r.node == "" {
		r.beat.Store(nil)
		return nil
	}
	if err := r.write(ctx, func(w Writer) error { return w.Delete(nodeBeatKey(r.node)) }); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	return nil
}

// Nodes lists the live nodes, by name: those whose heartbeat is at most
// NodeLiveness old. A single node lists itself (as LocalNode) once it
// has had a heartbeat.
func (r *Registry) Nodes(ctx context.Context) ([]NodeInfo, error) {
	if r.node == "" {
		if n := r.beat.Load(); n != nil {
			return []NodeInfo{*n}, nil
		}
		return []NodeInfo{}, nil
	}
	since := r.now().Add(-NodeLiveness)
	nodes := []NodeInfo{}
	err := r.view(ctx, func(rd Reader) error {
		return rd.Scan(nodeBeatsPrefix(), nil, false, func(k, v []byte) (bool, error) {
			var n NodeInfo
			if err := json.Unmarshal(v, &n); err != nil {
				return false, fmt.Errorf("corrupt heartbeat %q: %w", k, err)
			}
			if !n.Seen.Before(since) {
				nodes = append(nodes, n)
			}
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return nodes, nil
}

// Ping reads the store once (a point read in a read-only transaction),
// reporting whether it answers: the health check's probe.
func (r *Registry) Ping(ctx context.Context) error {
	return r.view(ctx, func(rd Reader) error {
		_, err := rd.Get(keyCheckKey())
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		return nil
	})
}
