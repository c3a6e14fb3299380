package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/iotgate/iotgate/api"
	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/metrics"
	"github.com/iotgate/iotgate/mqtt"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/guard"
	"github.com/iotgate/iotgate/registry/regions"
)

// The API reaches the registry only through the interface it declares.
var _ api.Registry = (*registry.Registry)(nil)

// wiring builds the protocol listeners and hands the API the interfaces
// they implement (command and message delivery). Each protocol adds
// itself here and nowhere else.
type wiring struct {
	cfg   *Config
	log   *slog.Logger
	reg   *registry.Registry
	certs *serverCerts
	// guard holds the abuse controls every listener and the ban API
	// share (see newGuard).
	guard guard.Guard
	// sessions counts each protocol's live sessions on this node, for
	// its heartbeat; listeners adds a counter per listener it builds.
	sessions map[registry.Protocol]func() int
	// metrics observes DTLS handshakes; protocolStats, filled by
	// listeners, is what /metrics reads of each listener; apiTokens
	// admit a scrape from off the machine (metrics.go).
	metrics       *metrics.Metrics
	protocolStats map[string]func() metrics.ProtocolStats
	apiTokens     []string
	// iotTokens checks activation centre tokens (activation.role
	// region); nil otherwise. mqttServer and lwm2mServer are the MQTT
	// and LwM2M servers, once built (nil when off).
	iotTokens   *regions.Tokens
	mqttServer  *mqtt.Server
	lwm2mServer *lwm2m.Server
	// descriptors is the budget of accepted connections every listener
	// draws on (descriptors.go); nil: none.
	descriptors *descriptorPools
	// apiConns is the connection table of the listeners on the API pool
	// (apiConnTable).
	apiConns *api.ConnTable
}

// apiConnTable is the table every listener drawing on the API pool
// shares: the per-address cap, and the pool shared fairly when a flood
// fills it (api.ConnTable).
//
// The table's capacity is the pool's less one descriptor for each of
// those listeners (api, api-tls, activation, activation-tls): each holds
// one for the instant between its accept and the table's verdict, and a
// flood of connections the table refuses keeps that instant busy, so a
// table as large as the pool would never fill and never evict.
func (w *wiring) apiConnTable() *api.ConnTable {
	const apiPoolListeners = 4
	if w.apiConns == nil {
		capacity := 0
		if limit := w.descriptors.apiLimit(); limit > 0 {
			capacity = max(limit-apiPoolListeners, 1)
		}
		w.apiConns = api.NewConnTable(w.cfg.Limits.API.MaxConnsPerAddress, capacity, w.log.With("listeners", "api"))
	}
	return w.apiConns
}

// sessionCounts is the heartbeat's device counts: every protocol named,
// 0 for one whose listener is off.
func (w *wiring) sessionCounts() map[string]int {
	m := map[string]int{string(registry.ProtocolMQTT): 0, string(registry.ProtocolLwM2M): 0}
	for p, count := range w.sessions {
		m[string(p)] = count()
	}
	return m
}

// newGuard is the abuse controls' guard. On a node of a cluster its ban
// list is the one every node shares, kept in the registry's store
// (guard.Shared, started by shareBans); on a single node it is this
// process's alone (guard.Local: nothing is written to the store).
func (w *wiring) newGuard() guard.Guard {
	cfg := w.cfg.Limits.guardConfig()
	if w.cfg.Cluster.clustered() {
		return guard.NewShared(cfg, w.reg, guard.SharedOptions{Logger: w.log.With("component", "bans")})
	}
	return guard.NewLocal(cfg)
}

// shareBans loads the cluster's ban list (before the listeners start, so
// a node that restarts enforces it from its first connection) and keeps
// it in step until ctx ends; it returns at once on a single node. The
// returned function waits for it to stop.
func (w *wiring) shareBans(ctx context.Context) (wait func()) {
	s, ok := w.guard.(*guard.Shared)
	if !ok {
		return func() {}
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := s.Reload(lctx); err != nil {
		w.log.Warn("cluster ban list not loaded at start; retrying in the background", "err", err)
	}
	cancel()
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	return func() { <-done }
}

func (w *wiring) listeners() ([]listener, api.Options, error) {
	var ls []listener
	var opts api.Options
	if w.guard == nil {
		w.guard = w.newGuard()
	}
	opts.Bans = w.guard
	router := w.reg.Router()
	if m, err := w.mqtt(); err != nil {
		return nil, opts, err
	} else if m != nil {
		w.mqttServer = m
		ls = append(ls, m)
		w.sessions[registry.ProtocolMQTT] = m.Connected
		w.protocolStats["mqtt"] = mqttStats(m)
		w.reg.AddKicker(m)
		if err := router.Register(registry.Adapter{Protocol: registry.ProtocolMQTT, Commands: m, Properties: m, Messages: m,
			SubDevices: m}); err != nil {
			return nil, opts, err
		}
	}
	if l, err := w.lwm2m(); err != nil {
		return nil, opts, err
	} else if l != nil {
		w.lwm2mServer = l
		ls = append(ls, l)
		w.sessions[registry.ProtocolLwM2M] = l.Registered
		w.protocolStats["lwm2m"] = lwm2mStats(l)
		w.reg.AddKicker(l)
		if err := router.Register(registry.Adapter{Protocol: registry.ProtocolLwM2M, AsyncCommands: l}); err != nil {
			return nil, opts, err
		}
		w.reg.SetFirmwareDeliverer(l)
	}
	opts.Router = router
	return ls, opts, nil
}

// lwm2m builds the LwM2M (CoAP, CoAP over DTLS) server; nil when both
// addresses are empty.
func (w *wiring) lwm2m() (*lwm2m.Server, error) {
	c := w.cfg.CoAP
	if c.Listen == "" && c.DTLSListen == "" {
		return nil, nil
	}
	var nodes lwm2m.NodeLister
	if w.cfg.Cluster.clustered() {
		nodes = w.reg
	}
	return lwm2m.New(lwm2m.Options{
		Node:             w.cfg.Cluster.NodeID,
		ForwardListen:    w.cfg.Cluster.Advertise[lwm2m.AdvertiseCoAPForward],
		Nodes:            nodes,
		Registry:         w.reg,
		Listen:           c.Listen,
		DTLSListen:       c.DTLSListen,
		Logger:           w.log.With("component", "lwm2m"),
		MinLifetime:      c.LifetimeMin,
		MaxLifetime:      c.LifetimeMax,
		QueueWindow:      c.QueueWindow,
		RequestTimeout:   c.RequestTimeout,
		HandshakeTimeout: c.HandshakeTimeout,
		MaxHandshakes:    c.MaxHandshakes,
		MaxUnverified:    c.MaxUnverified,
		CookieWait:       c.CookieWait,
		LogPerSecond:     c.LogPerSecond,
		LogBurst:         c.LogBurst,
		Guard:            w.guard,
		IdleTimeout:      c.IdleTimeout,
		SweepInterval:    c.SweepInterval,
		OnHandshake:      w.metrics.Handshake,
		Sessions:         w.reg,
		SaveInterval:     c.SaveInterval,
		Firmware: lwm2m.FirmwareOptions{MaxDownloads: c.Firmware.MaxDownloads, Host: c.Firmware.Host, HTTPURL: c.Firmware.HTTPURL,
			DownloadTimeout: c.Firmware.DownloadTimeout, UpdateTimeout: c.Firmware.UpdateTimeout},
	})
}

// mqtt builds the MQTT/MQTTS listener; nil when both addresses are empty.
func (w *wiring) mqtt() (*mqtt.Server, error) {
	c := w.cfg.MQTT
	if c.Listen == "" && c.TLSListen == "" {
		return nil, nil
	}
	var tc *tls.Config
	if c.TLSListen != "" {
		var err error
		if tc, err = w.certs.tlsConfig("mqtts", c.TLSCertFile, c.TLSKeyFile); err != nil {
			return nil, fmt.Errorf("mqtt: server certificate: %w", err)
		}
	}
	o := mqtt.Options{
		Registry:      w.reg,
		Listen:        c.Listen,
		TLSListen:     c.TLSListen,
		TLS:           tc,
		TimestampSkew: c.TimestampSkew,
		Guard:         w.guard,
		Limits:        w.cfg.Limits.mqttLimits(),
		Logger:        w.log.With("component", "mqtt"),
		Descriptors:   w.descriptors.forMQTT(),
	}
	if w.iotTokens != nil {
		o.IotTokens = w.iotTokens
	}
	return mqtt.New(o)
}
