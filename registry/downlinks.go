package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// Downlink messages (IoTDA's CreateMessage) are kept durably from the
// moment an application sends one, so a message to an MQTT device that is
// offline is held and delivered when it connects (IoTDA's delayed message
// delivery), and every message's outcome can be read back
// (ShowDeviceMessage, ListDeviceMessages). The registry owns the records
// and their lifecycle
//
//	PENDING ─┬─> DELIVERED
//	         ├─> FAILED    (the adapter refused it: not subscribed, ...)
//	         └─> TIMEOUT   (still PENDING when its ttl ran out)
//
// and the Router moves them along it. A device's PENDING messages are
// delivered in creation order (see Router.flushHeld).

// MessageStatus is the status of a downlink message.
type MessageStatus string

// The statuses of IoTDA's downlink messages.
const (
	// MessagePending: held by the platform, not yet delivered.
	MessagePending MessageStatus = "PENDING"
	// MessageDelivered: written to the device's session.
	MessageDelivered MessageStatus = "DELIVERED"
	// MessageFailed: the device's session refused it (see ErrorCode).
	MessageFailed MessageStatus = "FAILED"
	// MessageTimeout: its ttl ran out before the device connected.
	MessageTimeout MessageStatus = "TIMEOUT"
)

// Limits of downlink messages (IoTDA's).
const (
	// DownlinksKept is how many downlink messages a device keeps; the
	// oldest finished one makes room for a new one.
	DownlinksKept = 20
	// DefaultMessageTTL is the ttl, in minutes, used when none is given.
	DefaultMessageTTL = 1440
	// MaxMessageTTL is the largest ttl, in minutes (one day).
	MaxMessageTTL = 1440
	// messageTTLStep: a ttl is a multiple of 5 minutes.
	messageTTLStep = 5
	// uncachedGrace is how long a ttl-0 ("not cached") message sent to an
	// online device may wait behind the device's earlier messages in the
	// delivery under way before it times out.
	uncachedGrace = 30 * time.Second
)

// Error codes a FAILED message carries (IoTDA's ErrorInfoDTO).
const (
	MessageErrNotOnline     = "IOTDA.014016"
	MessageErrNotSubscribed = "IOTDA.014112"
)

// DownlinkMessage is one downlink message and its delivery state.
type DownlinkMessage struct {
	ProjectID string `json:"project"`
	DeviceID  string `json:"device"`
	MessageID string `json:"id"`
	Name      string `json:"name,omitempty"`
	// Message, Encoding, PayloadFormat and TopicSuffix are what the
	// application sent, kept to show it back.
	Message       json.RawMessage `json:"message"`
	Encoding      string          `json:"encoding,omitempty"`
	PayloadFormat string          `json:"payload_format,omitempty"`
	// Topic is the full topic it goes out on; empty: the default one.
	Topic string `json:"topic,omitempty"`
	// Payload is what the device receives.
	Payload []byte `json:"payload"`
	TTL     int    `json:"ttl"` // minutes

	Status       MessageStatus `json:"status"`
	ErrorCode    string        `json:"error_code,omitempty"`
	ErrorMsg     string        `json:"error_msg,omitempty"`
	CreatedTime  time.Time     `json:"created"`
	FinishedTime time.Time     `json:"finished,omitzero"`
	// Deadline is when a PENDING message times out; zero once final.
	Deadline time.Time `json:"deadline,omitzero"`
	// Seq orders a device's messages.
	Seq string `json:"seq"`
}

// wire is what the adapter sends.
func (m *DownlinkMessage) wire() DownMessage {
	return DownMessage{MessageID: m.MessageID, Name: m.Name, Payload: m.Payload, Topic: m.Topic}
}

// NewDownlinkMessage is what an application supplies to send a message.
type NewDownlinkMessage struct {
	MessageID     string // empty: one is generated
	Name          string
	Message       json.RawMessage
	Encoding      string
	PayloadFormat string
	Topic         string // full topic; empty: the default downlink topic
	Payload       []byte
	// TTL is how long, in minutes, the message may be held for an
	// offline device; nil means DefaultMessageTTL, 0 not at all.
	TTL *int
}

func (n *NewDownlinkMessage) validate() error {
	if n.MessageID == "" {
		n.MessageID = randomHex(16)
	} else if err := checkID("message_id", n.MessageID, 100, true); err != nil {
		return err
	}
	if err := checkText("name", n.Name, 128); err != nil {
		return err
	}
	if n.TTL != nil {
		if t := *n.TTL; t < 0 || t > MaxMessageTTL || t%messageTTLStep != 0 {
			return invalid("ttl", "must be a multiple of %d from 0 to %d minutes", messageTTLStep, MaxMessageTTL)
		}
	}
	return nil
}

func (n *NewDownlinkMessage) ttl() int {
	if n.TTL == nil {
		return DefaultMessageTTL
	}
	return *n.TTL
}

// Key layout of downlink messages (see keys.go):
//
//	dm/{device_id}/{message_id}  message record
//	dl/{device_id}/{seq}         message_id (a device's messages, oldest first)
//	dh/{device_id}/{seq}         message_id (its PENDING ones, oldest first)
//	dx/{deadline}/{device_id}/{message_id} nil (PENDING deadlines, ordered)
//	#dm/{device_id}              oldest seqs of dl and dh (downlinkmeta.go)

// createDownlink stores a new PENDING message of a device of project,
// dropping the device's oldest finished message once it keeps
// DownlinksKept (ErrQuota when all it keeps are PENDING).
func (r *Registry) createDownlink(ctx context.Context, project, deviceID string, n NewDownlinkMessage) (*DownlinkMessage, error) {
	if err := n.validate(); err != nil {
		return nil, err
	}
	now := r.now().UTC()
	m := &DownlinkMessage{
		ProjectID: project, DeviceID: deviceID, MessageID: n.MessageID, Name: n.Name,
		Message: n.Message, Encoding: n.Encoding, PayloadFormat: n.PayloadFormat,
		Topic: n.Topic, Payload: n.Payload, TTL: n.ttl(),
		Status: MessagePending, CreatedTime: now, Seq: r.ids.Next(now),
	}
	m.Deadline = now.Add(time.Duration(m.TTL) * time.Minute)
	if m.TTL == 0 {
		m.Deadline = now.Add(uncachedGrace)
	}
	err := r.write(ctx, func(w Writer) error {
		d, err := r.getDevice(w, deviceID)
		if err != nil {
			return err
		}
		if d.ProjectID != project {
			return &NotFoundError{Kind: EntityDevice, ID: deviceID}
		}
		if _, err := w.Get(downlinkKey(deviceID, m.MessageID)); err == nil {
			return &ConflictError{Field: UniqueMessageID, Value: m.MessageID}
		} else if !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		meta, err := readDownlinkMeta(w, deviceID)
		if err != nil {
			return err
		}
		if meta, err = trimDownlinks(w, deviceID, meta); err != nil {
			return err
		}
		for _, k := range [][]byte{downlinkListKey(deviceID, m.Seq), downlinkHeldKey(deviceID, m.Seq)} {
			if err := w.Set(k, []byte(m.MessageID)); err != nil {
				return err
			}
		}
		meta.added(m.Seq)
		if err := w.Set(downlinkMetaKey(deviceID), meta.encode()); err != nil {
			return err
		}
		if err := w.Set(downlinkDeadlineKey(m.Deadline, deviceID, m.MessageID), nil); err != nil {
			return err
		}
		if err := putDownlink(w, m); err != nil {
			return err
		}
		return r.messageStatusChanged(w, m)
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// trimDownlinks makes room for one more message of dev by dropping its
// oldest finished message once it keeps DownlinksKept, and returns m
// as it is then.
func trimDownlinks(w Writer, dev string, m downlinkMeta) (downlinkMeta, error) {
	prefix := prefixKey("dl", dev)
	var ids []string
	if err := w.Scan(prefix, m.from(prefix, m.oldest), false, func(_, v []byte) (bool, error) {
		ids = append(ids, string(v))
		return true, nil
	}); err != nil {
		return m, err
	}
	if len(ids) < DownlinksKept {
		return m, nil
	}
	for _, id := range ids {
		victim, err := getDownlink(w, dev, id)
		if err != nil {
			return m, err
		}
		if victim.Status == MessagePending {
			continue
		}
		if err := deleteDownlink(w, victim); err != nil {
			return m, err
		}
		if victim.Seq == m.oldest {
			m.oldest, err = seqAfter(w, prefix, victim.Seq)
		}
		return m, err
	}
	return m, fmt.Errorf("%w: device %s already holds %d pending messages", ErrQuota, dev, len(ids))
}

func putDownlink(w Writer, m *DownlinkMessage) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode message %s: %w", m.MessageID, err)
	}
	return w.Set(downlinkKey(m.DeviceID, m.MessageID), b)
}

func getDownlink(rd Reader, dev, id string) (*DownlinkMessage, error) {
	b, err := rd.Get(downlinkKey(dev, id))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, &NotFoundError{Kind: EntityMessage, ID: id}
	}
	if err != nil {
		return nil, fmt.Errorf("read message %s: %w", id, err)
	}
	var m DownlinkMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode message %s: %w", id, err)
	}
	return &m, nil
}

func deleteDownlink(w Writer, m *DownlinkMessage) error {
	keys := [][]byte{downlinkListKey(m.DeviceID, m.Seq), downlinkHeldKey(m.DeviceID, m.Seq), downlinkKey(m.DeviceID, m.MessageID)}
	if !m.Deadline.IsZero() {
		keys = append(keys, downlinkDeadlineKey(m.Deadline, m.DeviceID, m.MessageID))
	}
	for _, k := range keys {
		if err := w.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// deleteDownlinks removes every message of a device (device deletion).
func deleteDownlinks(w Writer, dev string) error {
	var ids []string
	if err := w.Scan(prefixKey("dl", dev), nil, false, func(_, v []byte) (bool, error) {
		ids = append(ids, string(v))
		return true, nil
	}); err != nil {
		return err
	}
	for _, id := range ids {
		m, err := getDownlink(w, dev, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := deleteDownlink(w, m); err != nil {
			return err
		}
	}
	return w.Delete(downlinkMetaKey(dev))
}

// finishDownlink moves a PENDING message to a final status (with IoTDA's
// error code and message when FAILED). It returns the message as it is
// now; ok is false when it was no longer PENDING (timed out, or another
// delivery finished it) and so was left alone.
func (r *Registry) finishDownlink(ctx context.Context, dev, id string, status MessageStatus, code, msg string) (m *DownlinkMessage, ok bool, err error) {
	now := r.now().UTC()
	err = r.write(ctx, func(w Writer) error {
		m, ok, err = r.finishIn(w, dev, id, status, code, msg, now)
		return err
	})
	return m, ok, err
}

// finishIn is finishDownlink within a write.
func (r *Registry) finishIn(w Writer, dev, id string, status MessageStatus, code, msg string, now time.Time) (*DownlinkMessage, bool, error) {
	m, err := getDownlink(w, dev, id)
	if err != nil || m.Status != MessagePending {
		return m, false, err
	}
	if err := w.Delete(downlinkHeldKey(dev, m.Seq)); err != nil {
		return nil, false, err
	}
	if err := w.Delete(downlinkDeadlineKey(m.Deadline, dev, id)); err != nil {
		return nil, false, err
	}
	m.Status, m.ErrorCode, m.ErrorMsg = status, code, msg
	m.FinishedTime, m.Deadline = now, time.Time{}
	if err := putDownlink(w, m); err != nil {
		return nil, false, err
	}
	if err := heldLeft(w, m); err != nil {
		return nil, false, err
	}
	return m, true, r.messageStatusChanged(w, m)
}

// heldLeft moves the device's oldest held seq on when m, which just left
// PENDING, was the oldest.
func heldLeft(w Writer, m *DownlinkMessage) error {
	meta, err := readDownlinkMeta(w, m.DeviceID)
	if err != nil || !meta.known || meta.oldestHeld != m.Seq {
		return err
	}
	if meta.oldestHeld, err = seqAfter(w, prefixKey("dh", m.DeviceID), m.Seq); err != nil {
		return err
	}
	return w.Set(downlinkMetaKey(m.DeviceID), meta.encode())
}

// messageStatusChanged is called in the transaction that creates a
// downlink message or changes its status: it records IoTDA's
// device.message.status update event, which commits with the change (an
// outbox).
func (r *Registry) messageStatusChanged(w Writer, m *DownlinkMessage) error {
	d, ok, err := r.eventDevice(w, m.DeviceID)
	if err != nil || !ok {
		return err
	}
	at := m.FinishedTime
	if at.IsZero() {
		at = m.CreatedTime
	}
	return r.downlinkStatusEvent(w, d, DownlinkStatus{MessageID: m.MessageID, Name: m.Name, Topic: m.Topic,
		Status: string(m.Status), At: at, ErrorCode: m.ErrorCode, ErrorMsg: m.ErrorMsg})
}

// heldDownlinks returns up to limit of a device's PENDING messages,
// oldest first: the order they must be delivered in.
func (r *Registry) heldDownlinks(ctx context.Context, dev string, limit int) ([]*DownlinkMessage, error) {
	var out []*DownlinkMessage
	err := r.view(ctx, func(rd Reader) error {
		meta, err := readDownlinkMeta(rd, dev)
		if err != nil || meta.noneHeld() {
			return err
		}
		prefix := prefixKey(famDownlinkHeld, dev)
		return rd.Scan(prefix, meta.from(prefix, meta.oldestHeld), false, func(_, v []byte) (bool, error) {
			m, err := getDownlink(rd, dev, string(v))
			if errors.Is(err, ErrNotFound) {
				return true, nil
			}
			if err != nil {
				return false, err
			}
			if m.Status == MessagePending {
				out = append(out, m)
			}
			return len(out) < limit, nil
		})
	})
	return out, err
}

// heldDevices calls fn for each device that has a PENDING message.
func (r *Registry) heldDevices(ctx context.Context, fn func(dev string)) error {
	return r.view(ctx, func(rd Reader) error {
		last := ""
		return rd.Scan(prefixKey(famDownlinkHeld), nil, false, func(k, _ []byte) (bool, error) {
			_, rest, _ := cutPart(string(k))
			dev, _, ok := cutPart(rest)
			if !ok {
				return false, fmt.Errorf("corrupt held message key %q", k)
			}
			if dev != last {
				fn(dev)
				last = dev
			}
			return true, nil
		})
	})
}

// DownlinkMessage returns a message sent to a device of project.
func (r *Registry) DownlinkMessage(ctx context.Context, project, deviceID, messageID string) (*DownlinkMessage, error) {
	if _, err := r.ProjectDevice(ctx, project, deviceID); err != nil {
		return nil, err
	}
	var m *DownlinkMessage
	err := r.view(ctx, func(rd Reader) error {
		var err error
		m, err = getDownlink(rd, deviceID, messageID)
		return err
	})
	return m, err
}

// DownlinkMessages returns the messages a device of project keeps
// (at most DownlinksKept), oldest first.
func (r *Registry) DownlinkMessages(ctx context.Context, project, deviceID string) ([]*DownlinkMessage, error) {
	if _, err := r.ProjectDevice(ctx, project, deviceID); err != nil {
		return nil, err
	}
	out := []*DownlinkMessage{}
	err := r.view(ctx, func(rd Reader) error {
		meta, err := readDownlinkMeta(rd, deviceID)
		if err != nil {
			return err
		}
		prefix := prefixKey("dl", deviceID)
		return rd.Scan(prefix, meta.from(prefix, meta.oldest), false, func(_, v []byte) (bool, error) {
			m, err := getDownlink(rd, deviceID, string(v))
			if err != nil {
				return false, err
			}
			out = append(out, m)
			return true, nil
		})
	})
	return out, err
}

// sweepDownlinks marks PENDING messages whose ttl ran out TIMEOUT,
// reading the ordered deadline index from its start and stopping at the
// first not due: the cost is proportional to the messages due. It returns
// how many it changed.
func (r *Registry) sweepDownlinks(ctx context.Context) (int, error) {
	return r.sweep(ctx, downlinkDeadlinePrefix, parseDownlinkDeadlineRef, func(due []string, now time.Time) (int, error) {
		changed := 0
		err := r.write(ctx, func(w Writer) error {
			changed = 0
			for _, ref := range due {
				dev, id, _ := strings.Cut(ref, string(rune(sep)))
				_, ok, err := r.finishIn(w, dev, id, MessageTimeout, "", "", now.UTC())
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if ok {
					changed++
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		return changed, nil
	})
}

// parseDownlinkDeadlineRef is parseDownlinkDeadlineKey for the sweep: the
// message is named "{device_id}\x00{message_id}".
func parseDownlinkDeadlineRef(k []byte) (time.Time, string, bool) {
	at, dev, id, ok := parseDownlinkDeadlineKey(k)
	return at, dev + string(rune(sep)) + id, ok
}
