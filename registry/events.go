package registry

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Durable events: every change a consumer may care about is recorded as
// an Event in the same transaction as the change (an outbox), so an event
// exists exactly when its change does. Resources and events are IoTDA's
// data-forwarding names, and Body is the body IoTDA pushes for them.

// Event resources (IoTDA's rule subjects).
const (
	ResourceDevice              = "device"                // create, update, delete
	ResourceDeviceStatus        = "device.status"         // update
	ResourceDeviceMessage       = "device.message"        // report
	ResourceDeviceProperty      = "device.property"       // report
	ResourceDeviceCommandStatus = "device.command.status" // update
	ResourceDeviceMessageStatus = "device.message.status" // update
	ResourceDeviceUpgradeStatus = "device.upgrade.status" // update (firmwareupgrades.go)
)

// Event names.
const (
	EventCreate = "create"
	EventUpdate = "update"
	EventDelete = "delete"
	EventReport = "report"
)

// Event is one recorded change of a device.
type Event struct {
	// ID is unique among all events.
	ID string
	// Position is the event's place in the stream: it increases in
	// commit order (with gaps) and is the cursor readers resume from.
	Position uint64
	// Seq numbers the device's events from 1 with no gap and no repeat;
	// a device deleted and created again starts over.
	Seq       uint64
	ProjectID string
	Time      time.Time
	Resource  string
	Event     string
	Header    EventHeader
	// Body is IoTDA's push body for Resource/Event, as JSON.
	Body json.RawMessage
}

// EventHeader is IoTDA's notify_data.header: the device an event is about.
type EventHeader struct {
	AppID     string     `json:"app_id"`
	DeviceID  string     `json:"device_id"`
	NodeID    string     `json:"node_id"`
	ProductID string     `json:"product_id"`
	GatewayID string     `json:"gateway_id"`
	Tags      []EventTag `json:"tags"`
}

// EventTag is a device tag as IoTDA pushes it.
type EventTag struct {
	Key   string `json:"tag_key"`
	Value string `json:"tag_value"`
}

// IoTDA's time formats in push bodies.
const (
	compactTime = "20060102T150405Z"
	isoMillis   = "2006-01-02T15:04:05.000Z"
)

func compactOrEmpty(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(compactTime)
}

// newDeviceEvent builds an event about d; body is encoded as JSON. Seq and
// Position are assigned by appendEvent.
func newDeviceEvent(d *Device, resource, event string, at time.Time, body any) (Event, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s %s event body: %w", resource, event, err)
	}
	return Event{ID: newEventID(), ProjectID: d.ProjectID, Time: at.UTC(), Resource: resource, Event: event,
		Header: deviceEventHeader(d), Body: b}, nil
}

func deviceEventHeader(d *Device) EventHeader {
	return EventHeader{AppID: d.ProjectID, DeviceID: d.DeviceID, NodeID: d.NodeID, ProductID: d.ProductID,
		GatewayID: d.EffectiveGatewayID(), Tags: eventTags(d)}
}

// newEventID returns 24 random hex characters.
func newEventID() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// storedEvent is the stored form of an Event, after an 8-byte seq; the
// position is the key's.
type storedEvent struct {
	ID       string          `json:"id"`
	Time     time.Time       `json:"time"`
	Resource string          `json:"resource"`
	Event    string          `json:"event"`
	Header   EventHeader     `json:"header"`
	Body     json.RawMessage `json:"body"`
}

// eventRecord encodes a storedEvent with its body not yet encoded, so an
// event costs one encoding.
type eventRecord struct {
	ID       string      `json:"id"`
	Time     time.Time   `json:"time"`
	Resource string      `json:"resource"`
	Event    string      `json:"event"`
	Header   EventHeader `json:"header"`
	Body     any         `json:"body"`
}

// encodedEvent is an event encoded before the committer numbers it: its
// seq and position are assigned by appendEncoded.
type encodedEvent struct {
	project, device string
	at              time.Time // the event's time
	rec             []byte    // a stored record, its seq still to set
}

// A stored event record is its seq (8 bytes, big-endian), a version
// byte, the event's time (unix nanoseconds, 8 bytes), then:
//   - eventRecordCompact: the event id's 12 bytes, a flags byte, and
//     compactEvent as JSON; with eventHeaderInBody the header is not
//     stored, since it is the device fields of the body (device create,
//     update and delete events), and with eventBodyBinary those events
//     are in binary instead (eventbinary.go);
//   - eventRecordTimed (ids that are not 24 hex digits, and records
//     written before the compact form): storedEvent as JSON.
//
// The time up front lets trimming by age read 17 bytes of a record
// instead of decoding it; the compact form stores about half of a device
// event's bytes (BENCHMARKS.md). Records written before the version byte
// existed have storedEvent's JSON right after the seq (it starts with '{').
const (
	eventRecordTimed   = 1
	eventRecordCompact = 2
	eventRecordHead    = 8 + 1 + 8
	eventIDBytes       = 12
	compactRecordHead  = eventRecordHead + eventIDBytes + 1

	eventHeaderInBody = 1 // flags: the header is the body's device fields
	eventBodyBinary   = 2 // flags: a device body in binary (eventbinary.go), not JSON
)

// compactEvent is the JSON of a compact record.
type compactEvent struct {
	Resource string          `json:"resource"`
	Event    string          `json:"event"`
	Header   *EventHeader    `json:"header,omitempty"`
	Body     json.RawMessage `json:"body"`
}

func encodeRecord(project, device string, rec eventRecord) (encodedEvent, error) {
	var (
		b   []byte
		err error
	)
	if id, ok := packHexID(rec.ID); ok {
		b = make([]byte, compactRecordHead, 384)
		b[8] = eventRecordCompact
		copy(b[eventRecordHead:], id[:])
		if body, isDevice := rec.Body.(*deviceEventBody); isDevice && rec.Resource == ResourceDevice && body.hasHeader(&rec.Header) {
			b[compactRecordHead-1] = eventHeaderInBody | eventBodyBinary
			b = appendDeviceBodyBinary(b, project, &rec, body)
		} else {
			b, err = appendEventRecord(b, &rec, true, false)
		}
	} else {
		b = make([]byte, eventRecordHead, 512)
		b[8] = eventRecordTimed
		b, err = appendEventRecord(b, &rec, false, false)
	}
	if err != nil {
		return encodedEvent{}, fmt.Errorf("encode %s %s event: %w", rec.Resource, rec.Event, err)
	}
	if y := rec.Time.Year(); y < 0 || y >= 10000 {
		return encodedEvent{}, fmt.Errorf("encode %s %s event: time %v: year outside [0,9999]", rec.Resource, rec.Event, rec.Time)
	}
	binary.BigEndian.PutUint64(b[9:], uint64(rec.Time.UnixNano()))
	return encodedEvent{project: project, device: device, at: rec.Time, rec: b}, nil
}

// packHexID returns the 12 bytes an id of 24 lowercase hex digits
// (newEventID's, a device's listing seq) spells: false for any other
// string, which must then be stored as it is to read back the same.
func packHexID(id string) (raw [eventIDBytes]byte, ok bool) {
	if len(id) != 2*eventIDBytes {
		return raw, false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return raw, false
		}
	}
	_, err := hex.Decode(raw[:], []byte(id))
	return raw, err == nil
}

// hasHeader reports whether h is the device fields of d.
func (d *deviceEventBody) hasHeader(h *EventHeader) bool {
	return h.AppID == d.AppID && h.DeviceID == d.DeviceID && h.NodeID == d.NodeID && h.ProductID == d.ProductID &&
		h.GatewayID == d.GatewayID && (h.Tags == nil) == (d.Tags == nil) && slices.Equal(h.Tags, d.Tags)
}

// eventRecordJSON returns the storedEvent JSON of a record that is not
// compact.
func eventRecordJSON(v []byte) ([]byte, error) {
	switch {
	case len(v) >= eventRecordHead && v[8] == eventRecordTimed:
		return v[eventRecordHead:], nil
	case len(v) > 8 && v[8] == '{':
		return v[8:], nil
	}
	return nil, errors.New("record too short or of an unknown version")
}

// eventRecordTime returns a stored record's event time (unix ns).
func eventRecordTime(v []byte) (int64, error) {
	if len(v) >= eventRecordHead && (v[8] == eventRecordTimed || v[8] == eventRecordCompact) {
		return int64(binary.BigEndian.Uint64(v[9:eventRecordHead])), nil
	}
	js, err := eventRecordJSON(v)
	if err != nil {
		return 0, err
	}
	var s struct {
		Time time.Time `json:"time"`
	}
	if err := json.Unmarshal(js, &s); err != nil {
		return 0, err
	}
	return s.Time.UnixNano(), nil
}

func encodeEvent(ev Event) (encodedEvent, error) {
	return encodeRecord(ev.ProjectID, ev.Header.DeviceID, eventRecord{ID: ev.ID, Time: ev.Time,
		Resource: ev.Resource, Event: ev.Event, Header: ev.Header, Body: ev.Body})
}

// encodeDeviceEvent encodes an event about d with body in one go.
func encodeDeviceEvent(d *Device, resource, event string, at time.Time, body any) (encodedEvent, error) {
	at = at.UTC()
	return encodeRecord(d.ProjectID, d.DeviceID, eventRecord{ID: newEventID(), Time: at, Resource: resource,
		Event: event, Header: deviceEventHeader(d), Body: body})
}

func decodeEvent(project string, pos uint64, v []byte) (Event, error) {
	if len(v) >= eventRecordHead && v[8] == eventRecordCompact {
		return decodeCompactEvent(project, pos, v)
	}
	js, err := eventRecordJSON(v)
	if err != nil {
		return Event{}, fmt.Errorf("event %d of %s: %w", pos, project, err)
	}
	var s storedEvent
	if err := json.Unmarshal(js, &s); err != nil {
		return Event{}, fmt.Errorf("decode event %d of %s: %w", pos, project, err)
	}
	return Event{ID: s.ID, Position: pos, Seq: binary.BigEndian.Uint64(v), ProjectID: project, Time: s.Time,
		Resource: s.Resource, Event: s.Event, Header: s.Header, Body: s.Body}, nil
}

func decodeCompactEvent(project string, pos uint64, v []byte) (Event, error) {
	if len(v) < compactRecordHead {
		return Event{}, fmt.Errorf("event %d of %s: compact record of %d bytes", pos, project, len(v))
	}
	flags := v[compactRecordHead-1]
	if flags&eventBodyBinary != 0 {
		return decodeBinaryEvent(project, pos, v)
	}
	var c compactEvent
	if err := json.Unmarshal(v[compactRecordHead:], &c); err != nil {
		return Event{}, fmt.Errorf("decode event %d of %s: %w", pos, project, err)
	}
	ev := Event{ID: hex.EncodeToString(v[eventRecordHead : eventRecordHead+eventIDBytes]), Position: pos,
		Seq: binary.BigEndian.Uint64(v), ProjectID: project,
		Time:     time.Unix(0, int64(binary.BigEndian.Uint64(v[9:eventRecordHead]))).UTC(),
		Resource: c.Resource, Event: c.Event, Body: c.Body}
	switch {
	case flags&eventHeaderInBody != 0:
		if err := json.Unmarshal(c.Body, &ev.Header); err != nil {
			return Event{}, fmt.Errorf("decode event %d of %s: header from body: %w", pos, project, err)
		}
	case c.Header != nil:
		ev.Header = *c.Header
	}
	return ev, nil
}

// decodeBinaryEvent reads a compact record whose device body is binary;
// the header is the body's device fields.
func decodeBinaryEvent(project string, pos uint64, v []byte) (Event, error) {
	resource, event, d, err := decodeDeviceBodyBinary(project, v[compactRecordHead:])
	if err != nil {
		return Event{}, fmt.Errorf("decode event %d of %s: %w", pos, project, err)
	}
	body, err := d.appendJSON(nil)
	if err != nil {
		return Event{}, fmt.Errorf("decode event %d of %s: %w", pos, project, err)
	}
	return Event{ID: hex.EncodeToString(v[eventRecordHead : eventRecordHead+eventIDBytes]), Position: pos,
		Seq: binary.BigEndian.Uint64(v), ProjectID: project,
		Time:     time.Unix(0, int64(binary.BigEndian.Uint64(v[9:eventRecordHead]))).UTC(),
		Resource: resource, Event: event, Body: body,
		Header: EventHeader{AppID: d.AppID, DeviceID: d.DeviceID, NodeID: d.NodeID, ProductID: d.ProductID,
			GatewayID: d.GatewayID, Tags: d.Tags}}, nil
}

// appendEvent records ev in w's transaction: it takes the device's next
// seq (read and written under w, so concurrent writes never share one)
// and, on one node, the next stream position; on a cluster it stores the
// event in the outbox, for the relay to give it its position. Call it from a write function, after the
// checks that may refuse the write: a refused write keeps no event.
// ev.Header.DeviceID and ev.ProjectID must be set (newDeviceEvent does).
func (r *Registry) appendEvent(w Writer, ev Event) error {
	e, err := encodeEvent(ev)
	if err != nil {
		return err
	}
	return r.appendEncoded(w, e)
}

// appendEncoded is appendEvent for an event encoded before the write, so
// the committer only numbers and stores it.
func (r *Registry) appendEncoded(w Writer, e encodedEvent) error {
	seq, err := r.events.lastSeq(w, e.device)
	if err != nil {
		return err
	}
	return r.appendAfter(w, e, seq)
}

// appendAfter is appendEncoded when the caller knows the device's last
// seq: a device created in this write has none (0), which spares the
// create a read.
func (r *Registry) appendAfter(w Writer, e encodedEvent, seq uint64) error {
	seq++
	if err := r.events.setSeq(w, e.device, seq); err != nil {
		return err
	}
	if r.events.shared {
		// A cluster's write leaves the position to the relay
		// (eventrelay.go).
		return appendOutbox(w, e, seq)
	}
	// The record is set under a copy: the op may run again (in the next
	// transaction) with another seq.
	rec := append([]byte(nil), e.rec...)
	binary.BigEndian.PutUint64(rec, seq)
	pos, err := r.events.nextPosition(w)
	if err != nil {
		return err
	}
	return w.Set(eventKey(e.project, pos), rec)
}

// eventDevice reads the device an event is about, as the write sees it:
// on a single node from the cache when it holds the committed record and
// no write in flight is writing it (see deviceExists), else through w. ok
// is false when the device does not exist.
func (r *Registry) eventDevice(w Reader, id string) (d *Device, ok bool, err error) {
	k := deviceKey(id)
	if v, ok := committedInCache(w, k); ok {
		if blob, isDev := v.(deviceBlob); isDev {
			if d, err := blob.device(id); err == nil {
				return d, true, nil
			}
		}
	}
	d, err = r.getDevice(w, id)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	return d, err == nil, err
}
