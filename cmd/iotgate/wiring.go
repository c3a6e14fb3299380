package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/iotgate/iotgate/api"
	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/mqtt"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/guard"
)

// wiring builds the protocol listeners and hands the API the interfaces
// they implement (command and message delivery). Each protocol adds
// itself here and nowhere else.
type wiring struct {
	cfg *Config
	log *slog.Logger
	reg *registry.Registry
	// guard holds the abuse controls every listener and the ban API
	// share (node-local: this process's memory).
	guard guard.Guard
}

func (w *wiring) listeners() ([]listener, api.Options, error) {
	var ls []listener
	var opts api.Options
	if w.guard == nil {
		w.guard = guard.NewLocal(w.cfg.Limits.guardConfig())
	}
	opts.Bans = w.guard
	if m, err := w.mqtt(); err != nil {
		return nil, opts, err
	} else if m != nil {
		ls = append(ls, m)
		w.reg.AddKicker(m)
		opts.Commands, opts.Messages = m, m
	}
	if l, err := w.lwm2m(); err != nil {
		return nil, opts, err
	} else if l != nil {
		ls = append(ls, l)
		w.reg.AddKicker(l)
		opts.AsyncCommands = l
	}
	return ls, opts, nil
}

// lwm2m builds the LwM2M (CoAP, CoAP over DTLS) server; nil when both
// addresses are empty.
func (w *wiring) lwm2m() (*lwm2m.Server, error) {
	c := w.cfg.CoAP
	if c.Listen == "" && c.DTLSListen == "" {
		return nil, nil
	}
	return lwm2m.New(lwm2m.Options{
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
		IdleTimeout:      c.IdleTimeout,
		SweepInterval:    c.SweepInterval,
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
		certFile, keyFile := c.TLSCertFile, c.TLSKeyFile
		if certFile == "" {
			g, err := mqtt.LoadOrCreateServerCert(filepath.Join(w.cfg.DataDir, "tls"), time.Now())
			if err != nil {
				return nil, err
			}
			certFile, keyFile = g.CertFile, g.KeyFile
			w.log.Info("mqtts uses a generated certificate; clients must trust its CA",
				"ca_file", g.CAFile, "cert_file", g.CertFile, "key_file", g.KeyFile, "created", g.Created)
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt: server certificate: %w", err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	return mqtt.New(mqtt.Options{
		Registry:      w.reg,
		Listen:        c.Listen,
		TLSListen:     c.TLSListen,
		TLS:           tc,
		TimestampSkew: c.TimestampSkew,
		Guard:         w.guard,
		Limits:        w.cfg.Limits.mqttLimits(),
		Logger:        w.log.With("component", "mqtt"),
	})
}
