package registry

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"
)

// Desired properties reach a device as IoTDA delivers them: a properties
// set (PropertiesSet through the one router, so to whichever node holds
// the session) carrying, per service, the desired values that differ from
// the reported ones. It is sent when the device comes online (the router
// looks only at devices the desired hint names), after each report that
// leaves a delta, and when an application changes the desired values of
// a device online. One set per device is under way at a time. A device
// that leaves a set unanswered is not sent another after its reports for
// shadowHold (IoTDA's protection period against a device that does not
// implement the set); its next connection still gets one.

// Desired-property sync bounds.
const (
	// shadowSyncTimeout is how long a device has to answer a set: the
	// synchronous requests' 20 s.
	shadowSyncTimeout = 20 * time.Second
	// shadowHold is IoTDA's 5-minute protection period.
	shadowHold = 5 * time.Minute
)

// desiredSyncs tracks the devices with a set under way, and those whose
// last set went unanswered (until when their reports send none). An entry
// of the second kind goes at the device's next sync after its hold, or
// in a sweep of the expired ones each time their number doubles.
type desiredSyncs struct {
	mu      sync.Mutex
	busy    map[string]bool
	held    map[string]time.Time
	sweepAt int
}

// minHeldSweep is the number of holds below which none is swept.
const minHeldSweep = 1024

func newDesiredSyncs() *desiredSyncs {
	return &desiredSyncs{busy: make(map[string]bool), held: make(map[string]time.Time), sweepAt: minHeldSweep}
}

// begin claims the device's sync; false if one is under way or, for a
// sync after a report, the device is held.
func (s *desiredSyncs) begin(dev string, afterReport bool, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy[dev] {
		return false
	}
	if until, ok := s.held[dev]; ok {
		if afterReport && now.Before(until) {
			return false
		}
		delete(s.held, dev)
	}
	s.busy[dev] = true
	return true
}

// end releases the device's sync; holdUntil a time to refuse syncs after
// reports until then (zero: none).
func (s *desiredSyncs) end(dev string, holdUntil, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.busy, dev)
	if holdUntil.IsZero() {
		return
	}
	s.held[dev] = holdUntil
	if len(s.held) >= s.sweepAt {
		for d, until := range s.held {
			if !now.Before(until) {
				delete(s.held, d)
			}
		}
		s.sweepAt = max(minHeldSweep, 2*len(s.held))
	}
}

// desiredDiffers starts sending the device its delta, unless a set is
// under way or (afterReport) the device is held. It does not wait.
func (rt *Router) desiredDiffers(dev string, afterReport bool) {
	if !rt.syncs.begin(dev, afterReport, rt.reg.now()) {
		return
	}
	go rt.syncDesired(context.Background(), dev)
}

// desiredOnConnect starts the sync of a device that came online, if the
// hint says it may have desired properties: a device without costs a map
// look-up.
func (rt *Router) desiredOnConnect(dev string) {
	if _, may := rt.desired.may(dev); may {
		rt.desiredDiffers(dev, false)
	}
}

// syncDesired sends the device its delta and waits for its answer; the
// caller has claimed the device's sync (begin).
func (rt *Router) syncDesired(ctx context.Context, dev string) {
	var hold time.Time
	defer func() { rt.syncs.end(dev, hold, rt.reg.now()) }()
	if place, _ := rt.locate(ctx, dev); place == sessionNone {
		return
	}
	mark, _ := rt.desired.may(dev)
	sh, err := rt.reg.ShadowOf(ctx, dev)
	if err != nil {
		rt.log.Error("reading the shadow to send desired properties", "device_id", dev, "err", err)
		return
	}
	if !sh.hasDesired() {
		rt.desired.clear(dev, mark)
		return
	}
	deltas := sh.Deltas()
	if len(deltas) == 0 {
		return
	}
	d, err := rt.reg.Device(ctx, dev)
	if err != nil {
		return // deleted meanwhile
	}
	body, err := json.Marshal(deltas)
	if err != nil {
		rt.log.Error("encoding desired properties", "device_id", dev, "err", err)
		return
	}
	sctx, cancel := context.WithTimeout(ctx, shadowSyncTimeout)
	defer cancel()
	id := randomHex(12)
	_, err = rt.SendProperties(sctx, d, PropertiesRequest{Op: PropertiesSet, RequestID: id, Services: body})
	switch {
	case err == nil:
		rt.log.Debug("desired properties sent", "device_id", dev, "request_id", id)
	case errors.Is(err, ErrTimeout):
		hold = rt.reg.now().Add(shadowHold)
		rt.log.Info("device left a desired-properties set unanswered; its reports send none for the hold",
			"device_id", dev, "request_id", id, "hold", shadowHold)
	case errors.Is(err, ErrNotConnected), errors.Is(err, ErrUnsupported):
		// Gone meanwhile (its next connection gets the delta), or a
		// protocol that takes no properties set.
	default:
		rt.log.Warn("sending desired properties failed", "device_id", dev, "err", err)
	}
}
