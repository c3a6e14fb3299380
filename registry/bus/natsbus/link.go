package natsbus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/iotgate/iotgate/registry"
)

// Errors a Call returns besides the registry's. Each is wrapped with the
// node's name.
var (
	// ErrOverloaded: the node had MaxInFlight requests in hand and
	// refused this one unread. It also matches registry.ErrNodeUnreachable
	// (the request was not delivered).
	ErrOverloaded = errors.New("node overloaded")
	// ErrHandlerPanicked: the node's handler panicked on the request; what
	// it did before is unknown.
	ErrHandlerPanicked = errors.New("node's handler panicked")
	// ErrBadEnvelope: a request or reply was not in this package's
	// envelope (another program on the subject, or a different version).
	ErrBadEnvelope = errors.New("malformed request or reply envelope")
)

// Request envelope: a version byte, the caller's remaining time in
// milliseconds as a uvarint (0: none), then the payload. The handler's
// context ends when the caller stops waiting, without trusting clocks.
const requestV1 byte = 1

// Reply envelope: a status byte, then the payload (statusOK only).
const (
	statusOK byte = iota
	statusOverloaded
	statusPanicked
	statusBadRequest
)

// link is the Bus's registry.NodeLink half.
type link struct {
	b        *Bus
	ctx      context.Context // handlers' parent; cancelled when Close gives up waiting
	cancel   context.CancelFunc
	sem      chan struct{} // a slot per request in flight
	inFlight sync.WaitGroup
	gate     sync.RWMutex // orders inFlight.Add before stop's Wait
	stopping bool
	handler  atomic.Pointer[func(ctx context.Context, req []byte) []byte]
	subOnce  sync.Once
	subErr   error
	sub      *nats.Subscription
	subMu    sync.Mutex
}

func (l *link) init(b *Bus, ctx context.Context, cancel context.CancelFunc, maxInFlight int) {
	l.b, l.ctx, l.cancel = b, ctx, cancel
	l.sem = make(chan struct{}, maxInFlight)
}

func (b *Bus) nodeSubject(node string) string { return b.o.Prefix + ".node." + node }

// Call sends req to node and waits for its answer until ctx ends (or
// CallTimeout, if ctx has no deadline). It fails with an error matching
// registry.ErrNodeUnreachable when the request was not delivered: no
// connection to NATS, no such node serving, the node overloaded. When
// ctx ends first the error matches ctx.Err(): the request may have been
// handled.
// noRespondersWindow: within this long of this node's (re)connection to
// NATS, a request that found no subscriber is sent again, for at most
// noRespondersRetry. After a NATS server (re)starts, it learns the other
// servers' subscriptions over its routes a few hundred milliseconds after
// its clients are connected, and meanwhile answers "no responders" for a
// node that is there. Later, "no responders" means the node is gone, and
// the caller hears it at once (a takeover from a dead node must not wait).
const noRespondersWindow = 2 * time.Second

// noRespondersRetry bounds how long one request is sent again.
const noRespondersRetry = 500 * time.Millisecond

// request is a NATS request, sent again while the server knows no
// subscriber shortly after this node's connection was made.
func (b *Bus) request(ctx context.Context, subject string, data []byte) (*nats.Msg, error) {
	giveUp := time.Now().Add(noRespondersRetry)
	for {
		msg, err := b.nc.RequestWithContext(ctx, subject, data)
		if !errors.Is(err, nats.ErrNoResponders) || time.Now().After(giveUp) ||
			time.Since(time.Unix(0, b.upAt.Load())) > noRespondersWindow {
			return msg, err
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
	}
}

func (b *Bus) Call(ctx context.Context, node string, req []byte) ([]byte, error) {
	if !validNode(node) {
		return nil, fmt.Errorf("natsbus: call node %q: not a node name: %w", node, registry.ErrNodeUnreachable)
	}
	if b.closed.Load() || !b.nc.IsConnected() {
		// nats.go would buffer the request until the connection is back:
		// the caller should rather hear now that the node is out of reach.
		return nil, fmt.Errorf("natsbus: call node %q: no connection to NATS: %w", node, registry.ErrNodeUnreachable)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.o.CallTimeout)
		defer cancel()
	}
	dl, _ := ctx.Deadline()
	ms := time.Until(dl).Milliseconds()
	if ms <= 0 {
		return nil, fmt.Errorf("natsbus: call node %q: %w", node, context.DeadlineExceeded)
	}
	env := make([]byte, 0, 1+binary.MaxVarintLen64+len(req))
	env = append(env, requestV1)
	env = binary.AppendUvarint(env, uint64(ms))
	env = append(env, req...)

	msg, err := b.request(ctx, b.nodeSubject(node), env)
	switch {
	case err == nil:
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("natsbus: call node %q: no such node serving: %w", node, registry.ErrNodeUnreachable)
	case ctx.Err() != nil:
		return nil, fmt.Errorf("natsbus: call node %q: no answer: %w", node, ctx.Err())
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrDisconnected):
		return nil, fmt.Errorf("natsbus: call node %q: %v: %w", node, err, registry.ErrNodeUnreachable)
	default:
		return nil, fmt.Errorf("natsbus: call node %q: %w", node, err)
	}
	if len(msg.Data) == 0 {
		return nil, fmt.Errorf("natsbus: call node %q: empty reply: %w", node, ErrBadEnvelope)
	}
	switch msg.Data[0] {
	case statusOK:
		return msg.Data[1:], nil
	case statusOverloaded:
		return nil, fmt.Errorf("natsbus: call node %q: %w: %w", node, ErrOverloaded, registry.ErrNodeUnreachable)
	case statusPanicked:
		return nil, fmt.Errorf("natsbus: call node %q: %w", node, ErrHandlerPanicked)
	case statusBadRequest:
		return nil, fmt.Errorf("natsbus: call node %q: it could not read the request: %w", node, ErrBadEnvelope)
	default:
		return nil, fmt.Errorf("natsbus: call node %q: reply status %d: %w", node, msg.Data[0], ErrBadEnvelope)
	}
}

// Serve has fn answer the requests other nodes send to this one, each on
// its own goroutine, at most MaxInFlight at once. fn's context ends when
// the caller stops waiting or the bus closes. A later Serve replaces fn.
func (b *Bus) Serve(fn func(ctx context.Context, req []byte) []byte) {
	l := &b.link
	l.handler.Store(&fn)
	l.subOnce.Do(func() {
		l.subMu.Lock()
		defer l.subMu.Unlock()
		if b.closed.Load() {
			return
		}
		l.sub, l.subErr = b.nc.Subscribe(b.nodeSubject(b.o.Node), l.request)
		if l.subErr != nil {
			// Only a closed connection or a bad subject fail here, and
			// Open has checked the subject.
			b.log.Error("natsbus: cannot serve requests", "err", l.subErr)
			return
		}
		if b.nc.IsConnected() { // serving when Serve returns, as with Open
			_ = b.nc.FlushTimeout(b.o.ConnectTimeout)
		}
	})
}

// request runs on the subscription's goroutine: it only hands off.
func (l *link) request(m *nats.Msg) {
	l.gate.RLock()
	if l.stopping {
		l.gate.RUnlock()
		return // the caller times out, as with a node that is gone
	}
	select {
	case l.sem <- struct{}{}:
	default:
		l.gate.RUnlock()
		l.respond(m, statusOverloaded, nil)
		return
	}
	l.inFlight.Add(1)
	l.gate.RUnlock()
	go func() {
		defer l.inFlight.Done()
		defer func() { <-l.sem }()
		l.handle(m)
	}()
}

func (l *link) handle(m *nats.Msg) {
	if len(m.Data) == 0 || m.Data[0] != requestV1 {
		l.respond(m, statusBadRequest, nil)
		return
	}
	ms, n := binary.Uvarint(m.Data[1:])
	if n <= 0 {
		l.respond(m, statusBadRequest, nil)
		return
	}
	req := m.Data[1+n:]
	ctx, cancel := l.ctx, context.CancelFunc(func() {})
	if ms > 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
	}
	defer cancel()
	fn := *l.handler.Load()
	var out []byte
	panicked := func() (panicked bool) {
		defer func() {
			if p := recover(); p != nil {
				l.b.log.Error("natsbus: request handler panicked", "panic", p, "stack", string(debug.Stack()))
				panicked = true
			}
		}()
		out = fn(ctx, req)
		return false
	}()
	if panicked {
		l.respond(m, statusPanicked, nil)
		return
	}
	l.respond(m, statusOK, out)
}

func (l *link) respond(m *nats.Msg, status byte, payload []byte) {
	if m.Reply == "" {
		return // a publish, not a request: nobody to answer
	}
	reply := make([]byte, 0, 1+len(payload))
	reply = append(reply, status)
	reply = append(reply, payload...)
	if err := m.Respond(reply); err != nil {
		l.b.log.Warn("natsbus: cannot answer a request", "err", err)
	}
}

// stop stops taking requests and waits for those in flight until
// deadline, then cancels their contexts.
func (l *link) stop(deadline time.Time) {
	l.subMu.Lock()
	if l.sub != nil {
		_ = l.sub.Unsubscribe()
	}
	l.subMu.Unlock()
	l.gate.Lock()
	l.stopping = true
	l.gate.Unlock()
	done := make(chan struct{})
	go func() { l.inFlight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Until(deadline)):
		l.cancel()
		select { // a handler deaf to its context is left behind
		case <-done:
		case <-time.After(time.Second):
			l.b.log.Warn("natsbus: closing with request handlers still running")
		}
	}
	l.cancel()
}
