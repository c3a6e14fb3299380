package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// Asynchronous commands are IoTDA's way to reach NB-IoT (LwM2M) devices,
// which sleep most of the time: the platform keeps each command durably and
// a protocol adapter delivers it when the device can take it. The registry
// owns the records and their status lifecycle
//
//	PENDING ─┬─> SENT ─┬─> DELIVERED ─┬─> SUCCESSFUL | FAILED | TIMEOUT
//	         │         └──────────────┘
//	         └─> EXPIRED
//
// and the adapter (see AsyncCommandDispatcher) moves commands along it.

// AsyncStatus is the status of an asynchronous command.
type AsyncStatus string

// The statuses of IoTDA's asynchronous commands.
const (
	// AsyncPending: kept by the platform, not yet sent.
	AsyncPending AsyncStatus = "PENDING"
	// AsyncExpired: still PENDING when its expire_time ran out.
	AsyncExpired AsyncStatus = "EXPIRED"
	// AsyncSent: handed to the device; no answer yet.
	AsyncSent AsyncStatus = "SENT"
	// AsyncDelivered: the device acknowledged it; no result yet.
	AsyncDelivered AsyncStatus = "DELIVERED"
	// AsyncSuccessful: the device executed it.
	AsyncSuccessful AsyncStatus = "SUCCESSFUL"
	// AsyncFailed: the device refused it or failed to execute it.
	AsyncFailed AsyncStatus = "FAILED"
	// AsyncTimeout: sent, but the device did not answer in time.
	AsyncTimeout AsyncStatus = "TIMEOUT"
)

// Final reports whether the status can no longer change.
func (s AsyncStatus) Final() bool {
	switch s {
	case AsyncExpired, AsyncSuccessful, AsyncFailed, AsyncTimeout:
		return true
	}
	return false
}

// Send strategies of an asynchronous command.
const (
	// SendImmediately sends the command at once if the device can take it.
	SendImmediately = "immediately"
	// SendDelay keeps the command until the device next sends data.
	SendDelay = "delay"
)

// Limits of asynchronous commands (IoTDA's).
const (
	// MaxPendingAsyncCommands is how many PENDING commands a device may have.
	MaxPendingAsyncCommands = 20
	// DefaultAsyncExpire is the expire_time used when none (or 0) is given.
	DefaultAsyncExpire = 86400
	// MaxAsyncExpire is the largest expire_time, in seconds (two days).
	MaxAsyncExpire = 172800
	// MaxAsyncParas bounds the size of a command's paras.
	MaxAsyncParas = 32 * 1024
	// AsyncCommandsKept is how many commands a device keeps (finished
	// ones are dropped oldest first beyond it).
	AsyncCommandsKept = 1000
	// asyncTimeoutGrace is added to an adapter's answer timeout before a
	// SENT command is declared TIMEOUT by the sweep, so the adapter, which
	// knows better, normally finishes the command first; the sweep covers
	// commands whose adapter died with them in flight.
	asyncTimeoutGrace = 30 * time.Second
)

// ErrNotPending is returned when a command cannot be sent because it is
// no longer PENDING (it was sent, or expired, meanwhile).
var ErrNotPending = errors.New("command is not pending")

// ErrNotSent is returned when a result arrives for a command that is not
// awaiting one (it timed out meanwhile).
var ErrNotSent = errors.New("command is not awaiting a result")

// AsyncCommand is one asynchronous command and its delivery state.
type AsyncCommand struct {
	ProjectID    string          `json:"project"`
	DeviceID     string          `json:"device"`
	CommandID    string          `json:"id"`
	ServiceID    string          `json:"service_id,omitempty"`
	CommandName  string          `json:"command_name,omitempty"`
	Paras        json.RawMessage `json:"paras"`
	ExpireTime   int64           `json:"expire_time"` // seconds
	SendStrategy string          `json:"send_strategy"`
	Status       AsyncStatus     `json:"status"`
	// Result is what the device answered, as JSON; nil until it did.
	Result        json.RawMessage `json:"result,omitempty"`
	CreatedTime   time.Time       `json:"created"`
	SentTime      time.Time       `json:"sent,omitzero"`
	DeliveredTime time.Time       `json:"delivered,omitzero"`
	ResponseTime  time.Time       `json:"responded,omitzero"`
	// Deadline is when the sweep acts on the command: a PENDING one
	// becomes EXPIRED, a SENT or DELIVERED one TIMEOUT. Zero when final.
	Deadline time.Time `json:"deadline,omitzero"`
	// Seq orders a device's commands and is the listing marker.
	Seq string `json:"seq"`
}

// NewAsyncCommand is what an application supplies to queue a command.
type NewAsyncCommand struct {
	ServiceID    string
	CommandName  string
	Paras        json.RawMessage // a JSON object
	ExpireTime   int64           // seconds; 0 means DefaultAsyncExpire
	SendStrategy string          // SendImmediately or SendDelay; empty means delay
}

// AsyncCommandDispatcher is implemented by the protocol adapter that
// carries asynchronous commands (lwm2m/); cmd/iotgate registers it with
// the Router.
type AsyncCommandDispatcher interface {
	// CheckAsyncCommand validates what the adapter will have to make of a
	// command (its paras for the named operation) before it is queued; a
	// *ValidationError says what is wrong.
	CheckAsyncCommand(c NewAsyncCommand) error
	// AsyncCommandQueued tells the adapter that deviceID has a new PENDING
	// command. With now (send_strategy immediately) the adapter delivers
	// the device's PENDING commands at once, oldest first, if the device
	// can take them, and returns once the oldest has been sent (it is
	// SENT) or left PENDING because it cannot; it never waits for the
	// device's answer. Commands left PENDING go at the device's next
	// uplink.
	AsyncCommandQueued(ctx context.Context, deviceID string, now bool)
	// AsyncCommandsMayWait tells the adapter, on a cluster, that another
	// node may have queued commands for deviceID ("": for any device)
	// without its request reaching this node (the bus's notice of the
	// PENDING entry, or a reconnection after notices were lost): the
	// adapter looks for them at the device's next uplink. It never
	// blocks.
	AsyncCommandsMayWait(deviceID string)
}

func (n *NewAsyncCommand) validate() error {
	if err := checkText("service_id", n.ServiceID, 64); err != nil {
		return err
	}
	if err := checkText("command_name", n.CommandName, 128); err != nil {
		return err
	}
	if len(n.Paras) > MaxAsyncParas {
		return invalid("paras", "must be at most 32 KB")
	}
	var obj map[string]json.RawMessage
	if len(n.Paras) == 0 || json.Unmarshal(n.Paras, &obj) != nil || obj == nil {
		return invalid("paras", "is required and must be a JSON object")
	}
	switch n.SendStrategy {
	case "":
		n.SendStrategy = SendDelay
	case SendImmediately, SendDelay:
	default:
		return invalid("send_strategy", "must be immediately or delay")
	}
	if n.ExpireTime < 0 || n.ExpireTime > MaxAsyncExpire {
		return invalid("expire_time", "must be 0 to %d seconds", MaxAsyncExpire)
	}
	if n.ExpireTime == 0 {
		n.ExpireTime = DefaultAsyncExpire
	}
	return nil
}

// CreateAsyncCommand queues a PENDING command for a device of project. The
// device must belong to a CoAP/LwM2M product (else the Router's
// *RefusedError) and have fewer than MaxPendingAsyncCommands PENDING
// commands (else ErrQuota). Applications go through Router.CreateAsyncCommand,
// which also tells the adapter.
func (r *Registry) CreateAsyncCommand(ctx context.Context, project, deviceID string, n NewAsyncCommand) (*AsyncCommand, error) {
	if err := n.validate(); err != nil {
		return nil, err
	}
	now := r.now().UTC()
	c := &AsyncCommand{
		ProjectID:    project,
		DeviceID:     deviceID,
		CommandID:    randomHex(16),
		ServiceID:    n.ServiceID,
		CommandName:  n.CommandName,
		Paras:        n.Paras,
		ExpireTime:   n.ExpireTime,
		SendStrategy: n.SendStrategy,
		Status:       AsyncPending,
		CreatedTime:  now,
		Deadline:     now.Add(time.Duration(n.ExpireTime) * time.Second),
		Seq:          r.ids.Next(now),
	}
	err := r.write(ctx, func(w Writer) error {
		d, err := r.getDevice(w, deviceID)
		if err != nil {
			return err
		}
		if d.ProjectID != project {
			return &NotFoundError{Kind: EntityDevice, ID: deviceID}
		}
		p, err := getProduct(w, d.ProductID)
		if err != nil {
			return err
		}
		if err := checkDelivery(DeliverAsyncCommand, deviceID, p); err != nil {
			return err
		}
		m, err := readAsyncMeta(w, deviceID)
		if err != nil {
			return err
		}
		apPrefix := asyncPendingPrefix(deviceID)
		pending, firstPending := 0, ""
		if err := w.Scan(apPrefix, m.from(apPrefix, m.oldestPending), false, func(k, _ []byte) (bool, error) {
			if pending == 0 {
				firstPending = string(k[len(apPrefix):])
			}
			pending++
			return pending < MaxPendingAsyncCommands, nil
		}); err != nil {
			return err
		}
		if pending >= MaxPendingAsyncCommands {
			return fmt.Errorf("%w: device %s already has %d pending commands", ErrQuota, deviceID, pending)
		}
		if !m.known {
			// A record of an earlier version: both lists were just read,
			// or are read here, from their start.
			m.oldestPending = firstPending
			if m.oldest, err = seqAfter(w, asyncDevicePrefix(deviceID), ""); err != nil {
				return err
			}
			m.known = true
		}
		if m, err = r.trimAsyncCommands(w, deviceID, m); err != nil {
			return err
		}
		if err := w.Set(asyncDeviceKey(deviceID, c.Seq), []byte(c.CommandID)); err != nil {
			return err
		}
		if err := w.Set(asyncPendingKey(deviceID, c.Seq), []byte(c.CommandID)); err != nil {
			return err
		}
		// The first, or older than the oldest (the clock went back: seqs
		// lead with the time).
		if m.oldest == "" || c.Seq < m.oldest {
			m.oldest = c.Seq
		}
		if m.oldestPending == "" || c.Seq < m.oldestPending {
			m.oldestPending = c.Seq
		}
		if err := w.Set(asyncCountKey(deviceID), m.encode()); err != nil {
			return err
		}
		if err := putAsyncCommand(w, nil, c); err != nil {
			return err
		}
		return r.commandEvent(w, nil, c)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// trimAsyncCommands makes room for one more command of the device by
// dropping its oldest finished one once it keeps AsyncCommandsKept, and
// returns m counting the one to come.
func (r *Registry) trimAsyncCommands(w Writer, dev string, m asyncMeta) (asyncMeta, error) {
	if m.kept >= AsyncCommandsKept {
		alPrefix := asyncDevicePrefix(dev)
		var victim *AsyncCommand
		err := w.Scan(alPrefix, m.from(alPrefix, m.oldest), false, func(_, v []byte) (bool, error) {
			c, err := getAsyncCommand(w, string(v))
			if err != nil {
				return false, err
			}
			if c.Status.Final() {
				victim = c
				return false, nil
			}
			return true, nil
		})
		if err != nil {
			return m, err
		}
		if victim != nil {
			if err := deleteAsyncCommand(w, victim); err != nil {
				return m, err
			}
			m.kept--
			if victim.Seq == m.oldest {
				if m.oldest, err = seqAfter(w, alPrefix, victim.Seq); err != nil {
					return m, err
				}
			}
		}
	}
	m.kept++
	return m, nil
}

func deleteAsyncCommand(w Writer, c *AsyncCommand) error {
	for _, k := range [][]byte{asyncDeviceKey(c.DeviceID, c.Seq), asyncPendingKey(c.DeviceID, c.Seq), asyncKey(c.CommandID)} {
		if err := w.Delete(k); err != nil {
			return err
		}
	}
	if !c.Deadline.IsZero() {
		return w.Delete(asyncDeadlineKey(c.Deadline, c.CommandID))
	}
	return nil
}

// deleteAsyncCommands removes every command of a device (device deletion).
func deleteAsyncCommands(w Writer, dev string) error {
	var ids []string
	if err := w.Scan(asyncDevicePrefix(dev), nil, false, func(_, v []byte) (bool, error) {
		ids = append(ids, string(v))
		return true, nil
	}); err != nil {
		return err
	}
	for _, id := range ids {
		c, err := getAsyncCommand(w, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := deleteAsyncCommand(w, c); err != nil {
			return err
		}
	}
	return w.Delete(asyncCountKey(dev))
}

// putAsyncCommand writes c and keeps its deadline index entry and its place
// in the device's PENDING queue in step with old (nil when new).
func putAsyncCommand(w Writer, old, c *AsyncCommand) error {
	var oldDeadline time.Time
	if old != nil {
		oldDeadline = old.Deadline
		if old.Status == AsyncPending && c.Status != AsyncPending {
			if err := w.Delete(asyncPendingKey(c.DeviceID, c.Seq)); err != nil {
				return err
			}
			if err := pendingLeft(w, c); err != nil {
				return err
			}
		}
	}
	if !oldDeadline.Equal(c.Deadline) {
		if !oldDeadline.IsZero() {
			if err := w.Delete(asyncDeadlineKey(oldDeadline, c.CommandID)); err != nil {
				return err
			}
		}
	}
	if !c.Deadline.IsZero() && !oldDeadline.Equal(c.Deadline) {
		if err := w.Set(asyncDeadlineKey(c.Deadline, c.CommandID), nil); err != nil {
			return err
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode command %s: %w", c.CommandID, err)
	}
	return w.Set(asyncKey(c.CommandID), b)
}

// pendingLeft moves the device's oldest PENDING seq on when c, which
// just left PENDING, was the oldest.
func pendingLeft(w Writer, c *AsyncCommand) error {
	m, err := readAsyncMeta(w, c.DeviceID)
	if err != nil || !m.known || m.oldestPending != c.Seq {
		return err
	}
	if m.oldestPending, err = seqAfter(w, asyncPendingPrefix(c.DeviceID), c.Seq); err != nil {
		return err
	}
	return w.Set(asyncCountKey(c.DeviceID), m.encode())
}

func getAsyncCommand(rd Reader, id string) (*AsyncCommand, error) {
	b, err := rd.Get(asyncKey(id))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, &NotFoundError{Kind: EntityCommand, ID: id}
	}
	if err != nil {
		return nil, fmt.Errorf("read command %s: %w", id, err)
	}
	var c AsyncCommand
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode command %s: %w", id, err)
	}
	return &c, nil
}

// AsyncCommand returns a command of a device of project.
func (r *Registry) AsyncCommand(ctx context.Context, project, deviceID, commandID string) (*AsyncCommand, error) {
	if _, err := r.ProjectDevice(ctx, project, deviceID); err != nil {
		return nil, err
	}
	var c *AsyncCommand
	err := r.view(ctx, func(rd Reader) error {
		var err error
		c, err = getAsyncCommand(rd, commandID)
		return err
	})
	if err != nil {
		return nil, err
	}
	if c.DeviceID != deviceID {
		return nil, &NotFoundError{Kind: EntityCommand, ID: commandID}
	}
	return c, nil
}

// AsyncCommandFilter narrows a command listing; empty fields match all.
type AsyncCommandFilter struct {
	Status      AsyncStatus
	CommandName string
	// From and To bound the creation time (inclusive); zero is open.
	From, To time.Time
}

// AsyncCommandList is one page of a device's commands, newest first.
type AsyncCommandList struct {
	Commands []*AsyncCommand
	Count    int64
	Marker   string
}

// ListAsyncCommands lists a device's commands, newest first, as IoTDA
// pages them (marker = seq of the last command returned).
func (r *Registry) ListAsyncCommands(ctx context.Context, project, deviceID string, f AsyncCommandFilter, pg Page) (*AsyncCommandList, error) {
	if _, err := r.ProjectDevice(ctx, project, deviceID); err != nil {
		return nil, err
	}
	out := &AsyncCommandList{}
	err := r.view(ctx, func(rd Reader) error {
		prefix := asyncDevicePrefix(deviceID)
		skip := pg.Offset
		return rd.Scan(prefix, nil, true, func(k, v []byte) (bool, error) {
			if pg.Marker != "" && string(k[len(prefix):]) >= pg.Marker {
				return true, nil
			}
			c, err := getAsyncCommand(rd, string(v))
			if err != nil {
				return false, err
			}
			if (f.Status != "" && c.Status != f.Status) || (f.CommandName != "" && c.CommandName != f.CommandName) ||
				(!f.From.IsZero() && c.CreatedTime.Before(f.From)) || (!f.To.IsZero() && c.CreatedTime.After(f.To)) {
				return true, nil
			}
			out.Count++
			if skip > 0 {
				skip--
				return true, nil
			}
			if len(out.Commands) < pg.Limit {
				out.Commands = append(out.Commands, c)
				out.Marker = c.Seq
			}
			return true, nil
		})
	})
	return out, err
}

// PendingAsyncCommands returns up to limit of a device's PENDING commands
// that have not expired, oldest first: the order they must be delivered in.
func (r *Registry) PendingAsyncCommands(ctx context.Context, deviceID string, limit int) ([]*AsyncCommand, error) {
	mark, may := r.pending.may(deviceID)
	if !may {
		return nil, nil
	}
	now := r.now()
	var out []*AsyncCommand
	entries := 0
	err := r.view(ctx, func(rd Reader) error {
		from, some, err := pendingFrom(rd, deviceID)
		if err != nil || !some {
			return err
		}
		return rd.Scan(asyncPendingPrefix(deviceID), from, false, func(_, v []byte) (bool, error) {
			entries++
			c, err := getAsyncCommand(rd, string(v))
			if errors.Is(err, ErrNotFound) {
				return true, nil
			}
			if err != nil {
				return false, err
			}
			if c.Status == AsyncPending && c.Deadline.After(now) {
				out = append(out, c)
			}
			return len(out) < limit, nil
		})
	})
	if err == nil && entries == 0 {
		r.pending.clear(deviceID, mark)
	}
	return out, err
}

// HasPendingAsyncCommands reports whether a device has a PENDING command.
func (r *Registry) HasPendingAsyncCommands(ctx context.Context, deviceID string) (bool, error) {
	if _, may := r.pending.may(deviceID); !may {
		return false, nil
	}
	found := false
	err := r.view(ctx, func(rd Reader) error {
		from, some, err := pendingFrom(rd, deviceID)
		if err != nil || !some {
			return err
		}
		return rd.Scan(asyncPendingPrefix(deviceID), from, false, func(_, _ []byte) (bool, error) {
			found = true
			return false, nil
		})
	})
	return found, err
}

// pendingFrom returns where a scan of the device's PENDING commands
// starts, or false when its record says it has none.
func pendingFrom(rd Reader, dev string) (from []byte, some bool, err error) {
	m, err := readAsyncMeta(rd, dev)
	if err != nil {
		return nil, false, err
	}
	if m.known && m.oldestPending == "" {
		return nil, false, nil
	}
	return m.from(asyncPendingPrefix(dev), m.oldestPending), true, nil
}

// StartAsyncCommand moves a PENDING command to SENT just before the adapter
// sends it; answerWithin is how long the adapter will wait for the device's
// answer. It fails with ErrNotPending if the command was sent or expired
// meanwhile (an expired one is marked EXPIRED here).
func (r *Registry) StartAsyncCommand(ctx context.Context, commandID string, answerWithin time.Duration) (*AsyncCommand, error) {
	now := r.now().UTC()
	var out *AsyncCommand
	expired := false
	err := r.write(ctx, func(w Writer) error {
		expired = false
		c, err := getAsyncCommand(w, commandID)
		if err != nil {
			return err
		}
		if c.Status != AsyncPending {
			return fmt.Errorf("%w: %s is %s", ErrNotPending, commandID, c.Status)
		}
		old := *c
		if !c.Deadline.After(now) {
			c.Status, c.Deadline = AsyncExpired, time.Time{}
			expired = true
		} else {
			c.Status, c.SentTime = AsyncSent, now
			c.Deadline = now.Add(answerWithin + asyncTimeoutGrace)
			out = c
		}
		if err := putAsyncCommand(w, &old, c); err != nil {
			return err
		}
		return r.commandEvent(w, &old, c)
	})
	if err != nil {
		return nil, err
	}
	if expired {
		return nil, fmt.Errorf("%w: %s expired", ErrNotPending, commandID)
	}
	return out, nil
}

// FinishAsyncCommand records the outcome of a SENT (or DELIVERED)
// command: DELIVERED when the device acknowledged it without a result
// yet, else SUCCESSFUL, FAILED or TIMEOUT, with the device's result
// (JSON, may be nil). It fails with ErrNotSent if the command is not
// awaiting an outcome (the sweep timed it out meanwhile).
func (r *Registry) FinishAsyncCommand(ctx context.Context, commandID string, status AsyncStatus, result json.RawMessage) error {
	switch status {
	case AsyncDelivered, AsyncSuccessful, AsyncFailed, AsyncTimeout:
	default:
		return invalid("status", "%s is not an outcome", status)
	}
	if len(result) > 0 && !json.Valid(result) {
		return invalid("result", "is not valid JSON")
	}
	now := r.now().UTC()
	err := r.write(ctx, func(w Writer) error {
		c, err := getAsyncCommand(w, commandID)
		if err != nil {
			return err
		}
		if c.Status != AsyncSent && c.Status != AsyncDelivered {
			return fmt.Errorf("%w: %s is %s", ErrNotSent, commandID, c.Status)
		}
		old := *c
		c.Status = status
		if len(result) > 0 {
			c.Result = result
		}
		switch status {
		case AsyncDelivered:
			c.DeliveredTime = now
		case AsyncSuccessful, AsyncFailed:
			if c.DeliveredTime.IsZero() {
				c.DeliveredTime = now
			}
			c.ResponseTime = now
			c.Deadline = time.Time{}
		case AsyncTimeout:
			c.Deadline = time.Time{}
		}
		if err := putAsyncCommand(w, &old, c); err != nil {
			return err
		}
		return r.commandEvent(w, &old, c)
	})
	if err == nil && status.Final() {
		r.commands.add(CommandAsync, string(status))
	}
	return err
}

// SweepAsyncCommands marks PENDING commands past their expire time EXPIRED
// and SENT or DELIVERED ones whose adapter never reported an outcome
// TIMEOUT, reading the ordered deadline index from its floor: the cost is
// proportional to the commands due. It returns how many it changed.
func (r *Registry) SweepAsyncCommands(ctx context.Context) (int, error) {
	return r.sweep(ctx, asyncDeadlinePrefix, parseAsyncDeadlineKey, func(due []string, now time.Time) (int, error) {
		changed, expired := 0, 0
		err := r.write(ctx, func(w Writer) error {
			changed, expired = 0, 0
			for _, id := range due {
				c, err := getAsyncCommand(w, id)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if c.Deadline.IsZero() || c.Deadline.After(now) {
					continue // moved on since the scan
				}
				old := *c
				switch c.Status {
				case AsyncPending:
					c.Status = AsyncExpired
					expired++
				case AsyncSent, AsyncDelivered:
					c.Status = AsyncTimeout
				}
				c.Deadline = time.Time{}
				if err := putAsyncCommand(w, &old, c); err != nil {
					return err
				}
				if err := r.commandEvent(w, &old, c); err != nil {
					return err
				}
				changed++
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		r.commands[commandIndex(CommandAsync, string(AsyncExpired))].Add(uint64(expired))
		r.commands[commandIndex(CommandAsync, string(AsyncTimeout))].Add(uint64(changed - expired))
		return changed, nil
	})
}
