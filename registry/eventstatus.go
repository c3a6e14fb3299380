package registry

import (
	"context"
	"errors"
	"time"
)

// Connection status events. Presence is live state that is not stored;
// what is stored is each device's last status change time, written at
// the next status flush (see flushStatus). A status event is written in
// the same transaction as that time: it is as durable as the time, and
// its seq comes after the events of writes made before the flush.

// statusChange is one ONLINE or OFFLINE transition waiting for the flush.
type statusChange struct {
	device string
	status Status
	at     time.Time
	// lastOnline is when the device last came online.
	lastOnline time.Time
	// still: the status did not change (a session replaced a live one);
	// only its time is persisted.
	still bool
}

// statusEventBody is the body of device.status update.
type statusEventBody struct {
	Status           Status `json:"status"`
	LastOnlineTime   string `json:"last_online_time,omitempty"`
	StatusUpdateTime string `json:"status_update_time"`
}

// statusFlushChunk bounds the status changes one write carries, keeping
// the transaction small however many devices changed since the last flush.
const statusFlushChunk = 512

// writeStatus persists the queued status times q and the transitions
// changes, in writes of at most statusFlushChunk devices; each device's
// time and events share one write. The events are encoded here, before
// the writes, so the committer only numbers and stores them.
func (r *Registry) writeStatus(ctx context.Context, q map[string]time.Time, changes []statusChange) error {
	byDevice := make(map[string][]encodedEvent, len(changes))
	for _, c := range changes {
		d, err := r.Device(ctx, c.device)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return err
		}
		ev, err := encodeDeviceEvent(d, ResourceDeviceStatus, EventUpdate, c.at, statusEventBody{Status: c.status,
			LastOnlineTime: compactOrEmpty(c.lastOnline), StatusUpdateTime: c.at.UTC().Format(isoMillis)})
		if err != nil {
			return err
		}
		byDevice[c.device] = append(byDevice[c.device], ev)
	}
	chunk := make(map[string]time.Time, min(len(q), statusFlushChunk))
	var events []encodedEvent
	flush := func() error {
		if len(chunk) == 0 && len(events) == 0 {
			return nil
		}
		times, evs := chunk, events
		err := r.write(ctx, func(w Writer) error {
			if err := statusWrites(times)(w); err != nil {
				return err
			}
			return r.statusEvents(w, evs)
		})
		chunk, events = make(map[string]time.Time, statusFlushChunk), nil
		return err
	}
	for id, at := range q {
		chunk[id] = at
		events = append(events, byDevice[id]...)
		delete(byDevice, id)
		if len(chunk) == statusFlushChunk || len(events) >= 4*statusFlushChunk {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	for _, evs := range byDevice { // transitions of no queued time (none today)
		events = append(events, evs...)
	}
	return flush()
}

// statusEvents records the status events of the devices that still
// exist, in the order given (per device, the order of the transitions).
func (r *Registry) statusEvents(w Writer, evs []encodedEvent) error {
	for _, ev := range evs {
		if ok, err := deviceExists(w, ev.device); err != nil {
			return err
		} else if !ok {
			continue // deleted meanwhile
		}
		if err := r.appendEncoded(w, ev); err != nil {
			return err
		}
	}
	return nil
}
