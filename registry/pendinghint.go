package registry

import (
	"bytes"
	"context"
	"fmt"
	"sync"
)

// pendingHint remembers the devices that may have PENDING asynchronous
// commands, so that the look for them each (re)registration makes (a
// Badger iterator: 5% of the server's CPU in a re-register storm) is
// skipped for the devices that have none, nearly all of them.
//
// It may name a device without pending commands, never miss one that has
// some: the committer marks a device once a write of a pending entry has
// committed (before acknowledging it), and a reader that found no entry
// clears the mark only if nothing marked the device since it looked.
type pendingHint struct {
	mu   sync.Mutex
	gen  uint64
	devs map[string]uint64 // device id -> generation of its last mark
}

func newPendingHint() *pendingHint { return &pendingHint{devs: make(map[string]uint64)} }

func (h *pendingHint) mark(dev string) {
	h.mu.Lock()
	h.gen++
	h.devs[dev] = h.gen
	h.mu.Unlock()
}

// may reports whether dev may have pending commands and, if so, the mark
// to pass to clear after looking.
func (h *pendingHint) may(dev string) (uint64, bool) {
	h.mu.Lock()
	g, ok := h.devs[dev]
	h.mu.Unlock()
	return g, ok
}

// clear forgets dev if its mark is still g: a look begun after g found no
// pending entry, and no write has marked it since.
func (h *pendingHint) clear(dev string, g uint64) {
	h.mu.Lock()
	if h.devs[dev] == g {
		delete(h.devs, dev)
	}
	h.mu.Unlock()
}

// pendingKeyDevice returns the device of an asynchronous command's
// pending entry (ap/{device_id}/{seq}), or false for other keys.
func pendingKeyDevice(k string) (string, bool) { return entryDevice(k, famAsyncPending) }

// heldKeyDevice returns the device of a held downlink message's entry
// (dh/{device_id}/{seq}), or false for other keys.
func heldKeyDevice(k string) (string, bool) { return entryDevice(k, famDownlinkHeld) }

// entryDevice returns the device of an entry {family}/{device_id}/{seq}.
func entryDevice(k, fam string) (string, bool) {
	family, rest, _ := cutPart(k)
	if family != fam {
		return "", false
	}
	dev, _, ok := cutPart(rest)
	if !ok {
		return "", false
	}
	return dev, true
}

// loadPendingHint marks every device with a pending entry in the store
// (at start-up: one scan of the pending entries, not of the devices).
func (r *Registry) loadPendingHint(ctx context.Context) error {
	return r.view(ctx, func(rd Reader) error {
		return rd.Scan(prefixKey(famAsyncPending), nil, false, func(k, _ []byte) (bool, error) {
			dev, ok := pendingKeyDevice(string(k))
			if !ok {
				return false, fmt.Errorf("corrupt pending command key %q", bytes.Clone(k))
			}
			r.pending.mark(dev)
			return true, nil
		})
	})
}
