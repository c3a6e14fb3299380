package registry

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// Connection status events. Presence is live state that is not stored;
// what is stored is each device's last status change time, written at
// the next status flush (see flushStatus). A status event is written in
// the same transaction as that time: it is as durable as the time, and
// its seq comes after the events of writes made before the flush.

// statusChange is one ONLINE or OFFLINE transition waiting for the flush.
type statusChange struct {
	device  string
	session Session // the session that changed
	status  Status
	at      time.Time
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

// statusEvent is a status event encoded for the flush, with the change it
// reports (a cluster's flush checks them against the stored record).
type statusEvent struct {
	encodedEvent
	status  Status
	session Session
}

// writeStatus persists the queued status times q and the transitions
// changes, in writes of at most statusFlushChunk devices; each device's
// time and events share one write. The events are encoded here, before
// the writes, so the committer only numbers and stores them.
func (r *Registry) writeStatus(ctx context.Context, q map[string]statusTime, changes []statusChange) error {
	byDevice := make(map[string][]statusEvent, len(changes))
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
		byDevice[c.device] = append(byDevice[c.device], statusEvent{encodedEvent: ev, status: c.status, session: c.session})
	}
	chunk := make(map[string]statusTime, min(len(q), statusFlushChunk))
	var events []statusEvent
	flush := func() error {
		if len(chunk) == 0 && len(events) == 0 {
			return nil
		}
		times, evs := chunk, events
		err := r.write(ctx, func(w Writer) error {
			if r.node != "" {
				return r.epochStatusWrites(w, times, evs)
			}
			if err := statusWrites(times)(w); err != nil {
				return err
			}
			return r.statusEvents(w, evs)
		})
		chunk, events = make(map[string]statusTime, statusFlushChunk), nil
		return err
	}
	for id, st := range q {
		chunk[id] = st
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
func (r *Registry) statusEvents(w Writer, evs []statusEvent) error {
	for _, ev := range evs {
		if ok, err := deviceExists(w, ev.device); err != nil {
			return err
		} else if !ok {
			continue // deleted meanwhile
		}
		if err := r.appendEncoded(w, ev.encodedEvent); err != nil {
			return err
		}
	}
	return nil
}

// statusRecord is a device's status key (statusTimeKey) on a cluster:
// the last status change time, and the session (epoch) and status of the
// last change recorded. A single node stores the time alone.
type statusRecord struct {
	at      time.Time
	session Session
	status  Status
}

func (s statusRecord) encode() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16+len(s.status)), uint64(s.at.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(s.session))
	return append(b, s.status...)
}

func decodeStatusRecord(v []byte) statusRecord {
	var s statusRecord
	if len(v) >= 8 {
		s.at = time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
	}
	if len(v) >= 16 {
		s.session = Session(binary.BigEndian.Uint64(v[8:]))
		s.status = Status(v[16:])
	}
	return s
}

// epochStatusWrites is a cluster's status write: several nodes flush
// changes of one device, in no particular order, so only the newest
// session's changes count. A change of an older session than the one
// recorded is dropped (a late OFFLINE of a session another node took over
// must not hide the newer ONLINE, nor its ONLINE follow a later OFFLINE),
// and an event repeating the recorded status is dropped (a takeover
// across nodes reports ONLINE in case the old node's ONLINE never made
// it).
func (r *Registry) epochStatusWrites(w Writer, times map[string]statusTime, evs []statusEvent) error {
	recs := make(map[string]*statusRecord, len(times))
	record := func(id string) (*statusRecord, error) {
		if rec, seen := recs[id]; seen {
			return rec, nil
		}
		recs[id] = nil
		if ok, err := deviceExists(w, id); err != nil || !ok {
			return nil, err // deleted meanwhile: nothing to record
		}
		v, err := w.Get(statusTimeKey(id))
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return nil, err
		}
		rec := decodeStatusRecord(v)
		recs[id] = &rec
		return &rec, nil
	}
	changed := make(map[string]bool, len(times))
	for _, ev := range evs {
		rec, err := record(ev.device)
		if err != nil {
			return err
		}
		if rec == nil || ev.session < rec.session || ev.status == rec.status {
			continue
		}
		if err := r.appendEncoded(w, ev.encodedEvent); err != nil {
			return err
		}
		rec.session, rec.status = ev.session, ev.status
		if ev.at.After(rec.at) {
			rec.at = ev.at
		}
		changed[ev.device] = true
	}
	for id, st := range times {
		rec, err := record(id)
		if err != nil {
			return err
		}
		if rec == nil || st.session < rec.session {
			continue
		}
		rec.session = st.session
		if st.at.After(rec.at) {
			rec.at = st.at
		}
		changed[id] = true
	}
	for id := range changed {
		if err := w.Set(statusTimeKey(id), recs[id].encode()); err != nil {
			return err
		}
	}
	return nil
}
