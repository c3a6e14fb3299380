package transport

import (
	"context"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	udpServer "github.com/plgd-dev/go-coap/v3/udp/server"
)

// Tick is the period of go-coap's periodic work: retransmissions and
// idle checks. A NoSec tick visits the addresses heard from in the last
// idle timeout, not every registered one; a DTLS tick, the sessions that
// need it (see sessionSweep).
const Tick = time.Second

// EveryTick runs f every Tick on a goroutine of its own until f returns
// false: go-coap's PeriodicRunner.
func EveryTick(f func(now time.Time) bool) {
	go func() {
		t := time.NewTicker(Tick)
		defer t.Stop()
		for f(time.Now()) {
			<-t.C
		}
	}()
}

// fullSweepEvery is how often every connection is checked: often enough
// for the idle timeout (of an unregistered DTLS session, of a NoSec
// address), rarely enough that a fleet of idle sessions costs little.
func fullSweepEvery(idle time.Duration) int {
	return int(min(max(idle/4, Tick), 10*time.Second) / Tick)
}

// Sweep is how a server checks its connections periodically.
type Sweep struct {
	// Idle is the connections' idle timeout: every connection is checked
	// at least every Idle/4 (between one and ten ticks).
	Idle time.Duration
	// Busy says a connection has a message being handled or a request of
	// the caller's in flight: it is checked every tick while so (nil:
	// never).
	Busy func(*udpClient.Conn) bool
}

// newConnSweep is the periodic check of go-coap connections idle after
// idle: go-coap's CheckExpirations (retransmissions, the idle monitor,
// caches), every tick for a connection busy with a message or a request
// of ours.
func newConnSweep(sw Sweep) *sessionSweep[*udpClient.Conn] {
	busy := sw.Busy
	if busy == nil {
		busy = func(*udpClient.Conn) bool { return false }
	}
	return newSessionSweep(fullSweepEvery(sw.Idle),
		func(cc *udpClient.Conn, now time.Time) { cc.CheckExpirations(now) }, busy)
}

// sweepConns has cfg's periodic runner (go-coap's one-second tick) run
// w while ctx lives.
func sweepConns(ctx context.Context, cfg *udpServer.Config, w *sessionSweep[*udpClient.Conn]) {
	cfg.PeriodicRunner(func(now time.Time) bool {
		w.run(now)
		return ctx.Err() == nil
	})
}

// closeConns closes every connection w knows (at shutdown).
func closeConns(w *sessionSweep[*udpClient.Conn]) {
	for _, cc := range w.snapshot() {
		_ = cc.Close()
	}
}

// newGoCoAPConn is go-coap's CoAP-over-UDP machinery on a session (a
// peer address on the NoSec socket, or a DTLS session), as go-coap's
// servers make it.
func newGoCoAPConn(cfg *udpServer.Config, sess udpClient.Session) *udpClient.Conn {
	cc := udpClient.DefaultConfig
	cc.TransmissionNStart = cfg.TransmissionNStart
	cc.TransmissionAcknowledgeTimeout = cfg.TransmissionAcknowledgeTimeout
	cc.TransmissionMaxRetransmit = cfg.TransmissionMaxRetransmit
	cc.Handler = cfg.Handler
	cc.BlockwiseSZX = cfg.BlockwiseSZX
	cc.Errors = cfg.Errors
	cc.GetMID = cfg.GetMID
	cc.GetToken = cfg.GetToken
	cc.MessagePool = cfg.MessagePool
	cc.ReceivedMessageQueueSize = cfg.ReceivedMessageQueueSize
	cc.ProcessReceivedMessage = cfg.ProcessReceivedMessage
	bw := func(*udpClient.Conn) *blockwise.BlockWise[*udpClient.Conn] { return nil }
	if cfg.BlockwiseEnable {
		bw = func(c *udpClient.Conn) *blockwise.BlockWise[*udpClient.Conn] {
			return blockwise.New(c, cfg.BlockwiseTransferTimeout, cfg.Errors,
				func(token message.Token) (*pool.Message, bool) { return c.GetObservationRequest(token) })
		}
	}
	return udpClient.NewConnWithOpts(sess, &cc,
		udpClient.WithBlockWise(bw),
		udpClient.WithInactivityMonitor(cfg.CreateInactivityMonitor()),
		udpClient.WithRequestMonitor(cfg.RequestMonitor))
}
