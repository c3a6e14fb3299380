package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
)

// maxDatagram is each simulated device's read buffer: above any message
// the fleet's exchanges carry (Register, Observe, small commands), and a
// fraction of the 64 KiB a general-purpose client reserves, which for
// tens of thousands of clients was a third of the fleet's CPU (zeroing).
const maxDatagram = 1500

// lwm2mDriver registers LwM2M devices with iotgate's own client, over
// CoAP (NoSec) or CoAP over DTLS with the device secret as PSK.
type lwm2mDriver struct {
	spec workerSpec
	ids  identities
}

func newLwM2MDriver(spec workerSpec) (*lwm2mDriver, error) {
	return &lwm2mDriver{spec: spec, ids: identities{prefix: spec.Prefix, seed: spec.Seed}}, nil
}

func (d *lwm2mDriver) connect(ctx context.Context, i int, t *timing) (session, error) {
	node := d.ids.nodeID(d.spec.Protocol, i)
	cfg := lwm2mclient.Config{Server: d.spec.Target, Endpoint: node, Lifetime: d.spec.Lifetime,
		RequestTimeout: d.spec.Timeout, MaxDatagram: maxDatagram}
	if ip := sourceIP(i, d.spec.Spread); ip != nil {
		cfg.LocalAddr = net.JoinHostPort(ip.String(), "0")
	}
	if d.spec.Protocol == protoDTLS {
		psk, err := hex.DecodeString(d.ids.secret(d.ids.deviceID(d.spec.Protocol, i)))
		if err != nil {
			return nil, err
		}
		cfg.PSKIdentity, cfg.PSK = node, psk
	}
	start := time.Now()
	c, err := lwm2mclient.Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if d.spec.Protocol == protoDTLS {
		t.handshake.ok(time.Since(start))
	}
	s := &lwm2mSession{c: c}
	if d.spec.HandshakeOnly {
		return s, nil
	}
	start = time.Now()
	if err := c.Register(ctx); err != nil {
		c.Close()
		var ce *lwm2mclient.CodeError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("register: %s", ce.Code)
		}
		return nil, fmt.Errorf("register: %w", err)
	}
	t.register.ok(time.Since(start))
	s.registered = true
	return s, nil
}

func (d *lwm2mDriver) close() {}

// lwm2mSession is a registered client. The client answers the server's
// requests (commands arrive as reads, writes and executes) by itself; the
// coordinator checks their outcome through the REST API.
type lwm2mSession struct {
	c          *lwm2mclient.Client
	registered bool
}

// uplink sets /19/0/0, which the client sends as a notification once the
// server observes it (iotgate observes it after registration).
func (s *lwm2mSession) uplink(seq int64) (bool, error) {
	if !s.registered || !s.c.Observed("/19/0/0") {
		return false, nil
	}
	return true, s.c.SendData([]byte("seq=" + strconv.FormatInt(seq, 10)))
}

func (s *lwm2mSession) keepalive() error { return nil } // lifetime outlasts the hold

// close de-registers and closes the session (a DTLS close_notify) when
// graceful; otherwise the socket just goes, as in a power cut.
func (s *lwm2mSession) close(ctx context.Context, graceful bool) error {
	if !graceful {
		s.c.Drop()
		return nil
	}
	var err error
	if s.registered {
		err = s.c.Deregister(ctx)
	}
	if cerr := s.c.Close(); err == nil {
		err = cerr
	}
	return err
}
