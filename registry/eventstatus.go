package registry

import (
	"context"
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
// time and events share one write.
func (r *Registry) writeStatus(ctx context.Context, q map[string]time.Time, changes []statusChange) error {
	byDevice := make(map[string][]statusChange, len(changes))
	for _, c := range changes {
		byDevice[c.device] = append(byDevice[c.device], c)
	}
	chunk := make(map[string]time.Time, min(len(q), statusFlushChunk))
	var events []statusChange
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
	for _, cs := range byDevice { // transitions of no queued time (none today)
		events = append(events, cs...)
	}
	return flush()
}

// statusEvents records transitions of the devices that still exist, in
// the order they happened per device.
func (r *Registry) statusEvents(w Writer, changes []statusChange) error {
	for _, c := range changes {
		d, ok, err := r.eventDevice(w, c.device)
		if err != nil {
			return err
		}
		if !ok {
			continue // deleted meanwhile
		}
		ev, err := encodeDeviceEvent(d, ResourceDeviceStatus, EventUpdate, c.at, statusEventBody{Status: c.status,
			LastOnlineTime: compactOrEmpty(c.lastOnline), StatusUpdateTime: c.at.UTC().Format(isoMillis)})
		if err != nil {
			return err
		}
		if err := r.appendEncoded(w, ev); err != nil {
			return err
		}
	}
	return nil
}
