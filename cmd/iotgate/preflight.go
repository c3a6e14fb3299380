package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/servercert"
)

// listenAddr is an address the configuration binds: its key, network
// and address.
type listenAddr struct{ key, network, addr string }

// listenAddrs are every address the configuration binds, in the order
// the server binds them.
func (c *Config) listenAddrs() []listenAddr {
	var out []listenAddr
	add := func(key, network, addr string) {
		if addr != "" {
			out = append(out, listenAddr{key, network, addr})
		}
	}
	add("mqtt.listen", "tcp", c.MQTT.Listen)
	add("mqtt.tls_listen", "tcp", c.MQTT.TLSListen)
	add("coap.listen", "udp", c.CoAP.Listen)
	add("coap.dtls_listen", "udp", c.CoAP.DTLSListen)
	if c.Cluster.clustered() {
		add("cluster.advertise."+lwm2m.AdvertiseCoAPForward, "udp", c.Cluster.Advertise[lwm2m.AdvertiseCoAPForward])
	}
	add("api.listen", "tcp", c.API.Listen)
	add("api.tls_listen", "tcp", c.API.TLSListen)
	add("metrics.listen", "tcp", c.Metrics.Listen)
	add("debug_listen", "tcp", c.DebugListen)
	return out
}

// checkListen binds every address the configuration names, holding each
// until all are bound (so two keys naming one address are found too),
// then releases them. It runs before anything is written, so that a busy
// port is reported before credentials are generated or the data
// directory is made.
func (c *Config) checkListen() error {
	var held []io.Closer
	defer func() {
		for _, h := range held {
			h.Close()
		}
	}()
	for _, a := range c.listenAddrs() {
		var h io.Closer
		var err error
		if a.network == "udp" {
			h, err = net.ListenPacket("udp", a.addr)
		} else {
			h, err = net.Listen("tcp", a.addr)
		}
		if err != nil {
			return fmt.Errorf("config: %s %q: cannot listen: %s", a.key, a.addr, bindFailure(err))
		}
		held = append(held, h)
	}
	return nil
}

// bindFailure says why a bind failed in the operator's terms.
func bindFailure(err error) string {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return "address already in use (is iotgate, or another server, running?)"
	case errors.Is(err, syscall.EACCES):
		return "permission denied (ports below 1024 need privileges)"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no interface of this machine has that address"
	}
	return err.Error()
}

// checkCertFiles loads every configured TLS certificate and key, as the
// server would: the key must match and the certificate must not have
// expired. The generated certificate under data_dir/tls is not checked:
// a start makes it, or renews it when near its end. It writes nothing.
func (c *Config) checkCertFiles() error {
	for _, p := range []struct{ key, listen, cert, keyFile string }{
		{"mqtt.tls_cert_file", c.MQTT.TLSListen, c.MQTT.TLSCertFile, c.MQTT.TLSKeyFile},
		{"api.tls_cert_file", c.API.TLSListen, c.API.TLSCertFile, c.API.TLSKeyFile},
	} {
		if p.listen == "" || p.cert == "" {
			continue
		}
		if _, err := servercert.NewReloader(p.cert, p.keyFile, slog.New(slog.DiscardHandler)); err != nil {
			return fmt.Errorf("config: %s: %w", p.key, err)
		}
	}
	return nil
}

// preflight checks what the server would otherwise find only after it
// has written to the data directory: that every listen address is free
// and every certificate file loads. The errors name the file at path.
func (c *Config) preflight(path string) error {
	if err := c.checkListen(); err != nil {
		return &configError{path, err}
	}
	if err := c.checkCertFiles(); err != nil {
		return &configError{path, err}
	}
	return nil
}
