package registry

import (
	"context"
	"errors"
	"sync/atomic"
)

// CommandKind is how a command reaches its device: synchronous (the
// application waits for the device's answer) or asynchronous (queued,
// its outcome recorded).
type CommandKind string

const (
	CommandSync  CommandKind = "sync"
	CommandAsync CommandKind = "async"
)

// The final statuses of synchronous commands, named as the asynchronous
// ones (AsyncStatus) where they mean the same.
const (
	syncSuccessful   = "SUCCESSFUL"
	syncTimeout      = "TIMEOUT"
	syncNotConnected = "NOT_CONNECTED"
	syncRefused      = "REFUSED" // not deliverable to the device's protocol
	syncFailed       = "FAILED"
)

// commandStatuses are the final statuses counted, per kind: a fixed set,
// so the counters are an array and counting takes no lock or map.
var commandStatuses = [...]struct {
	kind   CommandKind
	status string
}{
	{CommandSync, syncSuccessful}, {CommandSync, syncTimeout}, {CommandSync, syncNotConnected},
	{CommandSync, syncRefused}, {CommandSync, syncFailed},
	{CommandAsync, string(AsyncSuccessful)}, {CommandAsync, string(AsyncFailed)},
	{CommandAsync, string(AsyncTimeout)}, {CommandAsync, string(AsyncExpired)},
}

// commandCounters counts the commands that reached a final status on
// this node, by kind and status (the indexes of commandStatuses).
type commandCounters [len(commandStatuses)]atomic.Uint64

func (c *commandCounters) add(kind CommandKind, status string) {
	c[commandIndex(kind, status)].Add(1)
}

// commandIndex is the index of kind and status in commandStatuses; it
// panics for a pair not there (a status that is not final).
func commandIndex(kind CommandKind, status string) int {
	for i, s := range commandStatuses {
		if s.kind == kind && s.status == status {
			return i
		}
	}
	panic("registry: no command counter for " + string(kind) + " " + status)
}

// syncOutcome is the final status of a synchronous command that ended
// with err.
func syncOutcome(err error) string {
	var refused *RefusedError
	switch {
	case err == nil:
		return syncSuccessful
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return syncTimeout
	case errors.Is(err, ErrNotConnected), errors.Is(err, ErrNotSubscribed):
		return syncNotConnected
	case errors.As(err, &refused):
		return syncRefused
	}
	return syncFailed
}

// CommandCount is how many commands of one kind reached one final
// status.
type CommandCount struct {
	Kind   CommandKind
	Status string
	Count  uint64
}

// CommandCounts returns, for every kind and final status, how many
// commands this node saw end so: synchronous commands it delivered (or
// failed to) for the API, asynchronous ones whose outcome it recorded.
// Intermediate statuses (PENDING, SENT, DELIVERED) are not counted.
func (r *Registry) CommandCounts() []CommandCount {
	out := make([]CommandCount, len(commandStatuses))
	for i, s := range commandStatuses {
		out[i] = CommandCount{Kind: s.kind, Status: s.status, Count: r.commands[i].Load()}
	}
	return out
}
