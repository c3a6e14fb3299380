package lwm2m

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/iotgate/iotgate/registry"
)

// The command queue: the registry keeps asynchronous commands durably;
// this file delivers a device's PENDING ones, oldest first and one at a
// time, whenever its client can take them: at once for "immediately"
// commands of an awake client, else at its next uplink (Register, Update,
// notification). A queue-mode client that falls asleep mid-way keeps the
// rest for its next uplink.

// CheckAsyncCommand validates a command before it is queued
// (registry.AsyncCommandDispatcher): LwM2M operations must name a known
// operation with well-formed paras.
func (s *Server) CheckAsyncCommand(c registry.NewAsyncCommand) error {
	_, err := commandOperation(c.ServiceID, c.CommandName, c.Paras)
	return err
}

// AsyncCommandQueued learns of a new PENDING command
// (registry.AsyncCommandDispatcher).
func (s *Server) AsyncCommandQueued(ctx context.Context, deviceID string, now bool) {
	e := s.store.device(deviceID)
	if e == nil {
		return // delivered after it registers
	}
	e.pending.Store(true)
	if now {
		s.dispatch(ctx, e)
	}
}

// AsyncCommandsMayWait marks a device ("": every device registered here)
// as possibly having PENDING commands queued through another node, for
// its next uplink to look (registry.AsyncCommandDispatcher).
func (s *Server) AsyncCommandsMayWait(deviceID string) {
	if deviceID == "" {
		for _, e := range s.store.all() {
			e.pending.Store(true)
		}
		return
	}
	if e := s.store.device(deviceID); e != nil {
		e.pending.Store(true)
	}
}

// wake records that e's client sent something and, if commands wait for
// it, delivers them without holding up the caller (a read loop).
func (s *Server) wake(e *entry) {
	e.lastUplink.Store(s.now().UnixNano())
	s.fw.touched(e)
	if e.pending.Load() {
		s.work.run(func() { s.dispatch(s.ctx, e) })
	}
}

// uplink is wake for callers that may block (post-response work).
func (s *Server) uplink(e *entry) {
	e.lastUplink.Store(s.now().UnixNano())
	s.fw.touched(e)
	s.dispatch(s.ctx, e)
}

// dispatch starts delivering e's PENDING commands if there may be some, e
// is awake and no delivery runs (else that one looks again when done). It
// returns once the first command was sent or none could be.
func (s *Server) dispatch(ctx context.Context, e *entry) {
	if !e.pending.Load() || e.removed.Load() || !e.awake(s.now(), s.o.QueueWindow) {
		return
	}
	e.mu.Lock()
	if e.delivering {
		e.again = true
		e.mu.Unlock()
		return
	}
	e.delivering = true
	e.mu.Unlock()
	started := make(chan struct{})
	s.work.run(func() { s.deliverLoop(e, started) })
	select {
	case <-started:
	case <-ctx.Done():
	}
}

func (s *Server) deliverLoop(e *entry, started chan struct{}) {
	signal := func() {
		if started != nil {
			close(started)
			started = nil
		}
	}
	defer signal()
	for {
		s.deliverPending(e, signal)
		e.mu.Lock()
		if e.again && !e.removed.Load() {
			e.again = false
			e.mu.Unlock()
			continue
		}
		e.again, e.delivering = false, false
		e.mu.Unlock()
		return
	}
}

// deliverPending sends e's PENDING commands in order while e is awake.
func (s *Server) deliverPending(e *entry, sent func()) {
	e.pending.Store(false) // cleared before the look: a later queueing sets it again
	cmds, err := s.reg.PendingAsyncCommands(s.ctx, e.deviceID, registry.MaxPendingAsyncCommands)
	if err != nil {
		e.pending.Store(true)
		s.log.Error("lwm2m: reading pending commands", "device_id", e.deviceID, "err", err)
		return
	}
	for _, c := range cmds {
		if e.removed.Load() || !e.awake(s.now(), s.o.QueueWindow) {
			e.pending.Store(true) // the rest wait for its next uplink
			return
		}
		op, opErr := commandOperation(c.ServiceID, c.CommandName, c.Paras)
		if _, err := s.reg.StartAsyncCommand(s.ctx, c.CommandID, s.o.RequestTimeout); err != nil {
			if errors.Is(err, registry.ErrNotPending) {
				continue // expired or taken meanwhile
			}
			e.pending.Store(true)
			s.log.Error("lwm2m: marking command sent", "device_id", e.deviceID, "command_id", c.CommandID, "err", err)
			return
		}
		sent()
		status, result := s.runCommand(e, op, opErr)
		if err := s.reg.FinishAsyncCommand(s.ctx, c.CommandID, status, result); err != nil {
			s.log.Warn("lwm2m: recording command outcome", "device_id", e.deviceID, "command_id", c.CommandID, "err", err)
		}
		s.log.Debug("lwm2m command delivered", "device_id", e.deviceID, "command_id", c.CommandID, "status", status)
	}
}

// runCommand performs one command and returns its outcome and result.
func (s *Server) runCommand(e *entry, op *Operation, opErr error) (registry.AsyncStatus, json.RawMessage) {
	if opErr != nil {
		return registry.AsyncFailed, mustJSON(commandResult{Error: opErr.Error()})
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.o.RequestTimeout)
	defer cancel()
	resp, err := s.perform(ctx, e, op)
	switch {
	case errors.Is(err, registry.ErrTimeout):
		return registry.AsyncTimeout, nil
	case err != nil:
		return registry.AsyncFailed, mustJSON(commandResult{Error: err.Error()})
	}
	res, ok := resultOf(op, resp)
	if !ok {
		return registry.AsyncFailed, mustJSON(res)
	}
	return registry.AsyncSuccessful, mustJSON(res)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(commandResult{Error: "cannot encode result: " + err.Error()})
	}
	return b
}
