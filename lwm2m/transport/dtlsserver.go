package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"

	dtlsServer "github.com/plgd-dev/go-coap/v3/dtls/server"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	udpServer "github.com/plgd-dev/go-coap/v3/udp/server"
)

// DTLSServer serves CoAP on the DTLS sessions a DTLSListener accepts,
// built from go-coap's parts (its DTLS session and UDP connection) with
// the caller's configuration.
//
// It stands in for go-coap's dtls/server.Server, which keeps its sessions
// in a map keyed by the peer's address and drives their periodic checks
// (retransmission of our requests, the idle monitor) from that map. Two
// sessions can have one address here: a device that reboots handshakes
// again from the same address (see udpMux), the new session's entry
// replaced the old one's, and the old session's end then deleted it, so
// the new session never retransmitted a request. And a Connection ID
// session whose address changes was deleted under its new address, which
// left the entry, and the whole session, in the map for good. Here
// sessions are kept by identity, and swept by sessionSweep.
type DTLSServer struct {
	cfg    udpServer.Config
	ctx    context.Context
	cancel context.CancelFunc

	sessions *sessionSweep[*udpClient.Conn]
	wg       sync.WaitGroup
}

// NewDTLSServer serves the sessions of a DTLSListener with go-coap's
// connections configured by cfg, checked as sw says.
func NewDTLSServer(cfg udpServer.Config, sw Sweep) *DTLSServer {
	errs := cfg.Errors
	cfg.Errors = func(err error) {
		if !coapNet.IsCancelOrCloseError(err) {
			errs(fmt.Errorf("dtls: %w", err))
		}
	}
	ctx, cancel := context.WithCancel(cfg.Ctx)
	sessions := newConnSweep(sw)
	return &DTLSServer{cfg: cfg, ctx: ctx, cancel: cancel, sessions: sessions}
}

// Serve accepts sessions until Stop, then closes the listener and the
// sessions and waits for their goroutines.
func (s *DTLSServer) Serve(l *DTLSListener) error {
	defer s.wg.Wait()
	defer closeConns(s.sessions)
	defer l.Close()
	sweepConns(s.ctx, &s.cfg, s.sessions)
	for {
		nc, err := l.AcceptWithContext(s.ctx)
		if err != nil {
			if errors.Is(err, coapNet.ErrListenerIsClosed) || s.ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dtls accept: %w", err)
		}
		cc := s.newConn(coapNet.NewConn(nc))
		s.cfg.OnNewConn(cc)
		s.sessions.add(cc)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := cc.Run(); err != nil {
				s.cfg.Errors(fmt.Errorf("%v: %w", cc.RemoteAddr(), err))
			}
			s.sessions.remove(cc)
		}()
	}
}

// Stop ends Serve (and closes its listener) without waiting for it.
func (s *DTLSServer) Stop() { s.cancel() }

// newConn is go-coap's DTLS server connection: a session over the DTLS
// connection and the CoAP-over-UDP machinery on top.
func (s *DTLSServer) newConn(nc *coapNet.Conn) *udpClient.Conn {
	return newGoCoAPConn(&s.cfg, dtlsServer.NewSession(s.ctx, nc, s.cfg.MaxMessageSize, s.cfg.MTU, true))
}

// RequestStarted has cc checked every tick while busy, so the request
// just made busy on it is retransmitted on time.
func (s *DTLSServer) RequestStarted(cc *udpClient.Conn) { s.sessions.markHot(cc) }
