package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Delivery across nodes: when a device's live session is held by another
// node (presence names it), the router sends the request over NodeLink to
// that node, whose router delivers it to its own adapter and answers
// (serve). Everything that must survive the trip is stored first: an
// asynchronous command or a downlink message is PENDING in the store
// before it is forwarded, so an unreachable node costs only a delay (the
// device gets it at its next connection or uplink, wherever that is). A
// synchronous command is not stored: it fails with ErrNodeUnreachable.

// Forwarding bounds.
const (
	// forwardMargin is what a forwarded command may take beyond the
	// command's own timeout: the two trips between the nodes.
	forwardMargin = 2 * time.Second
	// forwardTimeout bounds a forwarded request with no deadline of its
	// own (a command whose ctx has none, a notice of stored work).
	forwardTimeout = 30 * time.Second
	// kickTimeout bounds the request closing another node's session: a
	// connect does not wait longer for it.
	kickTimeout = 2 * time.Second
)

// reasonTakenOver is the reason Kickers get when another node took a
// device's session over.
const reasonTakenOver = "taken over by another node"

// call sends req to node and decodes its answer.
func (rt *Router) call(ctx context.Context, node string, req nodeRequest) (json.RawMessage, error) {
	b, err := encodeNodeRequest(req)
	if err != nil {
		return nil, err
	}
	ans, err := rt.reg.link.Call(ctx, node, b)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ErrNodeUnreachable) {
			return nil, fmt.Errorf("%w: node %s did not answer %s for %s: %v", ErrTimeout, node, req.Kind, req.Device, err)
		}
		return nil, fmt.Errorf("%s for %s on node %s: %w", req.Kind, req.Device, node, err)
	}
	return decodeNodeAnswer(node, ans)
}

// forwardSync sends a synchronous request (a command, a properties
// request) to the node holding the device's session and waits for the
// device's answer: the device gets what is left of ctx's time, the trip
// forwardMargin more.
func (rt *Router) forwardSync(ctx context.Context, node string, req nodeRequest) (json.RawMessage, error) {
	wait := forwardTimeout
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	if wait <= 0 {
		return nil, ErrTimeout
	}
	// The caller's deadline is the device's; the trip back gets the margin.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait+forwardMargin)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			cancel()
		}
	})
	defer stop()
	req.Timeout = wait.Milliseconds()
	return rt.call(cctx, node, req)
}

// notify tells the node holding the device's session of stored work (an
// asynchronous command, downlink messages) and waits for it to be taken.
// A node that cannot be reached leaves the work PENDING, for the device's
// next connection or uplink.
func (rt *Router) notify(ctx context.Context, node string, req nodeRequest) {
	cctx, cancel := context.WithTimeout(ctx, forwardTimeout)
	defer cancel()
	if _, err := rt.call(cctx, node, req); err != nil && ctx.Err() == nil {
		rt.log.Warn("forwarding to the node holding the session failed; the request stays pending",
			"device_id", req.Device, "node", node, "kind", req.Kind, "err", err)
	}
}

// serve answers another node's request (NodeLink.Serve's function). It
// delivers only to this node's adapters: a session that moved on since
// the sender looked is ErrNotConnected, never forwarded again.
func (rt *Router) serve(ctx context.Context, b []byte) []byte {
	req, err := decodeNodeRequest(b)
	if err != nil {
		rt.log.Warn("refused a request from another node", "err", err)
		return answerOf(nil, err)
	}
	switch req.Kind {
	case nodeCommand, nodeProperties:
		return answerOf(rt.serveSync(ctx, req))
	case nodeAsyncCommand:
		return answerOf(nil, rt.serveAsyncCommand(ctx, req))
	case nodeMessages:
		return answerOf(nil, rt.serveMessages(ctx, req))
	case nodeSubDevices:
		return answerOf(nil, rt.notifySubDevices(ctx, req.Device, *req.SubDevices))
	case nodeKick:
		reason := req.Reason
		if reason == "" {
			reason = reasonTakenOver
		}
		rt.reg.yield(req.Device, req.Session, reason)
		return answerOf(nil, nil)
	}
	return answerOf(nil, fmt.Errorf("%w: unknown kind %q", ErrBadNodeRequest, req.Kind))
}

// serveSync delivers another node's synchronous request (a command, a
// properties request) to this node's session of the device.
func (rt *Router) serveSync(ctx context.Context, req nodeRequest) (json.RawMessage, error) {
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.Timeout)*time.Millisecond)
		defer cancel()
	}
	d, err := rt.reg.Device(ctx, req.Device)
	if err != nil {
		return nil, err
	}
	kind := DeliverCommand
	if req.Kind == nodeProperties {
		kind = DeliverProperties
	}
	p, err := rt.route(ctx, kind, d)
	if err != nil {
		return nil, err
	}
	if place, _ := rt.locate(ctx, req.Device); place != sessionLocal {
		return nil, ErrNotConnected
	}
	a := rt.adapter(p)
	switch {
	case req.Kind == nodeCommand && a.Commands != nil:
		return a.Commands.SendCommand(ctx, d, *req.Command)
	case req.Kind == nodeProperties && a.Properties != nil:
		return a.Properties.SendProperties(ctx, d, *req.Properties)
	}
	return nil, ErrNotConnected
}

func (rt *Router) serveAsyncCommand(ctx context.Context, req nodeRequest) error {
	d, err := rt.reg.Device(ctx, req.Device)
	if err != nil {
		return err
	}
	p, err := rt.route(ctx, DeliverAsyncCommand, d)
	if err != nil {
		return err
	}
	a := rt.adapter(p).AsyncCommands
	if a == nil {
		return fmt.Errorf("%w: no adapter for %s on this node", ErrUnsupported, p)
	}
	// The sender's bus notice of the pending entry may arrive after this
	// request: without the mark the adapter's look would find nothing.
	rt.reg.pending.mark(req.Device)
	a.AsyncCommandQueued(ctx, req.Device, req.Now)
	return nil
}

// asyncCommandsMayWait passes the bus's word that another node may have
// queued asynchronous commands for dev ("": any device) to this node's
// adapter for them, so that a lost request (notify) costs the device only
// the wait for its next uplink.
func (rt *Router) asyncCommandsMayWait(dev string) {
	if a := rt.adapter(ProtocolLwM2M).AsyncCommands; a != nil {
		a.AsyncCommandsMayWait(dev)
	}
}

func (rt *Router) serveMessages(ctx context.Context, req nodeRequest) error {
	rt.held.mark(req.Device)
	if place, _ := rt.locate(ctx, req.Device); place != sessionLocal {
		return ErrNotConnected
	}
	select {
	case <-rt.flush(req.Device):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// kickElsewhere asks node, which held the device's session before s took
// it over, to close its session. An unreachable node is logged and left:
// its session's disconnect will find it superseded and write no status.
func (r *Registry) kickElsewhere(ctx context.Context, node, id string, s Session) {
	if r.link == nil || node == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kickTimeout)
	defer cancel()
	if _, err := r.router.call(ctx, node, nodeRequest{Kind: nodeKick, Device: id, Session: s}); err != nil {
		r.log.Warn("could not ask the node holding the old session to close it", "device_id", id, "node", node, "err", err)
	}
}

// yield closes this node's sessions of the device older than s (which
// another node took it over with, or the last one when the device lost
// its right to a session); a newer session of this node is left alone.
func (r *Registry) yield(id string, s Session, reason string) {
	if sp, ok := r.presence.(*StorePresence); ok && !sp.yield(id, s) {
		return
	}
	r.kick(id, reason)
}

// sessionElsewhere returns the device's session when another node holds
// it (never on a single node).
func (r *Registry) sessionElsewhere(ctx context.Context, id string) (LiveSession, bool) {
	if r.link == nil {
		return LiveSession{}, false
	}
	s, ok, err := r.liveSession(ctx, id)
	if err != nil {
		r.log.Error("looking up session", "device_id", id, "err", err)
	}
	return s, ok && s.Node != r.node
}

// kickEverywhere closes the device's sessions on this node and, when
// elsewhere is another node's session (sessionElsewhere, read before the
// change that ends it), on that node: the device was deleted or frozen,
// or its credentials changed.
func (r *Registry) kickEverywhere(ctx context.Context, id, reason string, elsewhere LiveSession, isElsewhere bool) {
	r.kick(id, reason)
	if !isElsewhere {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kickTimeout)
	defer cancel()
	req := nodeRequest{Kind: nodeKick, Device: id, Session: elsewhere.Session + 1, Reason: reason}
	if _, err := r.router.call(ctx, elsewhere.Node, req); err != nil {
		r.log.Warn("could not ask the node holding the device's session to close it",
			"device_id", id, "node", elsewhere.Node, "reason", reason, "err", err)
	}
}

// dropSession forgets the device's session (it was deleted or frozen).
func (r *Registry) dropSession(ctx context.Context, id string) {
	if err := r.presence.Drop(context.WithoutCancel(ctx), id); err != nil {
		r.log.Error("dropping session", "device_id", id, "err", err)
	}
}
