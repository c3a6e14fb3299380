package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/iotgate/iotgate/api"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/bus/natsbus"
	"github.com/iotgate/iotgate/registry/kv/groupcommit"
)

// clusterBus is what a node of a cluster needs of the bus the nodes
// share (NATS): nil on a single node.
type clusterBus interface {
	// Invalidator tells the other nodes which cached records a write
	// changed (registry.Options.Invalidator).
	Invalidator() registry.Invalidator
	// EventHints wakes the other nodes' event stream readers (forwarding)
	// when this node commits events (registry.Options.EventHints); nil:
	// they poll.
	EventHints() registry.EventHinter
	// Link carries the delivery router's requests to the node holding a
	// device's session.
	Link() registry.NodeLink
	// Healthy reports whether the bus is reachable now (/healthz).
	Healthy() error
	// Close leaves the bus.
	Close() error
}

// busOpener connects this node to cluster.nats_url.
type busOpener func(ctx context.Context, c ClusterConfig, log *slog.Logger) (clusterBus, error)

// natsBus joins the cluster's NATS (cluster.nats_url). It does not wait
// for NATS: a node starts, and serves its own devices, while the bus is
// down, and catches up when it comes (see natsbus).
func natsBus(ctx context.Context, c ClusterConfig, log *slog.Logger) (clusterBus, error) {
	b, err := natsbus.Open(ctx, natsbus.Options{URL: c.NATSURL, Node: c.NodeID, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("config: cluster.nats_url: %w", err)
	}
	return natsClusterBus{b}, nil
}

// natsClusterBus is a NATS bus in the roles a node gives it.
type natsClusterBus struct{ *natsbus.Bus }

func (b natsClusterBus) Invalidator() registry.Invalidator { return b.Bus }
func (b natsClusterBus) Link() registry.NodeLink           { return b.Bus }
func (b natsClusterBus) EventHints() registry.EventHinter  { return b.Bus }

// node is what this process serves from: the store, the bus (clustered)
// and the registry over them.
type node struct {
	name  string // cluster.node_id, or registry.LocalNode
	store *openedStore
	bus   clusterBus // nil on a single node
	reg   *registry.Registry
	lease registry.Lease // the cluster's singleton lease; nil on a single node
}

// openNode opens the store (its writes observed by obs, when not nil),
// joins the bus when clustered, starts the registry and checks that the
// master key opens the store's secrets.
func openNode(ctx context.Context, cfg *Config, key []byte, log *slog.Logger, openBus busOpener, obs groupcommit.Observer) (*node, error) {
	n := &node{name: registry.LocalNode}
	opened := false
	defer func() {
		if !opened {
			n.close()
		}
	}()
	var err error
	if n.store, err = openStore(ctx, cfg.Store, cfg.DataDir, log, obs); err != nil {
		return nil, err
	}
	rc := cfg.Registry
	o := registry.Options{Store: n.store, MasterKey: key, Logger: log, SweepInterval: rc.SweepInterval,
		CacheEntries: rc.CacheEntries, CacheMaxAge: rc.CacheMaxAge, Quotas: registry.Quotas{DevicesPerProduct: rc.MaxDevicesPerProduct,
			SubDevicesPerGateway: rc.MaxSubDevicesPerGateway, ClientIDsPerDevice: rc.MaxClientIDsPerDevice,
			SubDevicesPerRequest: rc.MaxSubDevicesPerRequest, GroupsPerProject: rc.MaxDeviceGroupsPerProject,
			DevicesPerGroup: rc.MaxDevicesPerGroup, GroupsPerDevice: rc.MaxGroupsPerDevice, GroupDepth: rc.MaxGroupDepth},
		Events: registry.EventOptions{Retention: cfg.Events.Retention, MaxEvents: cfg.Events.MaxEvents,
			OfflineGrace: cfg.Events.OfflineGrace}}
	if c := cfg.Cluster; c.clustered() {
		if n.bus, err = openBus(ctx, c, log.With("component", "bus")); err != nil {
			return nil, err
		}
		n.name = c.NodeID
		o.Node = c.NodeID
		o.Invalidator = n.bus.Invalidator()
		o.EventHints = n.bus.EventHints()
		o.Link = n.bus.Link()
		o.Lease = registry.NewStoreLease(n.store, c.NodeID, nil)
		n.lease = o.Lease
	}
	if n.reg, err = registry.New(o); err != nil {
		return nil, err
	}
	if err := n.reg.CheckMasterKey(ctx); err != nil {
		if errors.Is(err, registry.ErrMasterKeyMismatch) {
			return nil, fmt.Errorf("master key (master_key, $IOTGATE_MASTER_KEY or data_dir/master.key): %w", err)
		}
		return nil, fmt.Errorf("master key check: %w", err)
	}
	opened = true
	return n, nil
}

// close stops the registry, then leaves the bus and closes the store.
func (n *node) close() {
	if n.reg != nil {
		n.reg.Close()
	}
	if n.bus != nil {
		n.bus.Close()
	}
	if n.store != nil {
		n.store.Close()
	}
}

// busHealth is what /healthz probes of the bus: nil on a single node.
func (n *node) busHealth() api.BusHealth {
	if n.bus == nil {
		return nil
	}
	return n.bus
}

// heartbeats writes this node's heartbeat (registry.Heartbeat) at once
// and every registry.HeartbeatInterval until ctx ends, then removes it
// (a planned leave). devices counts the live sessions per protocol;
// advertise are the node's addresses for the other nodes
// (cluster.advertise).
func heartbeats(ctx context.Context, reg *registry.Registry, started time.Time, devices func() map[string]int, advertise map[string]string, log *slog.Logger) {
	beat := func() {
		bctx, cancel := context.WithTimeout(ctx, registry.HeartbeatInterval)
		defer cancel()
		if err := reg.Heartbeat(bctx, registry.NodeInfo{Started: started, Devices: devices(), Advertise: advertise}); err != nil && ctx.Err() == nil {
			log.Warn("heartbeat not written", "err", err)
		}
	}
	beat()
	t := time.NewTicker(registry.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := reg.Leave(lctx); err != nil {
				log.Warn("heartbeat not removed at shutdown", "err", err)
			}
			cancel()
			return
		case <-t.C:
			beat()
		}
	}
}
