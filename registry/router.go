package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// The Router is the one way an application's request reaches a device.
// Protocol adapters (mqtt/, lwm2m/) register what they can deliver; the
// router decides, from the device's protocol and IoTDA's rules, whether a
// kind of request may go to the device at all, then hands it to the
// adapter holding the device's live session, or keeps it for the device's
// next connection (downlink messages) or uplink (asynchronous commands).
//
// The registry's presence says whether there is a session and which node
// holds it: this process's adapter for the device's protocol delivers to
// a session held here; one held by another node of a cluster gets the
// request over NodeLink (forward.go).
//
// The router decides by protocol; the wire format within a protocol is
// the live session's, chosen by the adapter that holds it: an MQTT device
// may connect the IoTDA way or the Alibaba way with the same credentials,
// so only its connection says whether a command goes out on
// $oc/devices/{id}/sys/commands/... or as an Alink RRPC call (see
// mqtt/alidownlink.go). A kind of request one dialect cannot carry is
// refused by the adapter with an error that unwraps to ErrUnsupported.

// Protocol is how a device reaches the platform, as far as delivery goes.
type Protocol string

// The protocols adapters deliver over.
const (
	ProtocolMQTT Protocol = "MQTT"
	// ProtocolLwM2M: NB-IoT devices (product protocol_type CoAP or LwM2M).
	ProtocolLwM2M Protocol = "LwM2M"
)

// ProtocolOf returns the protocol a product's devices speak; a
// protocol_type no adapter serves (HTTP, Modbus...) is returned as is.
func ProtocolOf(p *Product) Protocol {
	switch {
	case p.IsCoAP():
		return ProtocolLwM2M
	case p.ProtocolType == "MQTT":
		return ProtocolMQTT
	}
	return Protocol(p.ProtocolType)
}

// Delivery is a kind of request the router carries to devices.
type Delivery string

// The kinds of request. Kick/takeover joins here, with its rule in
// allows and its interface in Adapter, when it is routed.
const (
	DeliverCommand      Delivery = "synchronous commands"
	DeliverProperties   Delivery = "property queries and settings"
	DeliverAsyncCommand Delivery = "asynchronous commands"
	DeliverMessage      Delivery = "downlink messages"
)

// allows holds IoTDA's rules of which protocols a kind of request is for:
// synchronous commands, property get/set and messages for MQTT devices
// only, asynchronous commands for NB-IoT (LwM2M) devices only (whose
// properties an application reads and writes through them). It is the one
// place they are decided.
func (k Delivery) allows(p Protocol) bool {
	switch k {
	case DeliverCommand, DeliverProperties, DeliverMessage:
		return p == ProtocolMQTT
	case DeliverAsyncCommand:
		return p == ProtocolLwM2M
	}
	return false
}

// RefusedError is IoTDA's refusal of a kind of request for a device whose
// protocol does not carry it. It unwraps to ErrUnsupported.
type RefusedError struct {
	Kind         Delivery
	DeviceID     string
	ProtocolType string // the device's product protocol_type
}

func (e *RefusedError) Error() string {
	want := "MQTT"
	if e.Kind == DeliverAsyncCommand {
		want = "NB-IoT (CoAP/LwM2M)"
	}
	return fmt.Sprintf("%s are for %s devices only; device %s is %s", e.Kind, want, e.DeviceID, e.ProtocolType)
}

func (e *RefusedError) Unwrap() error { return ErrUnsupported }

// checkDelivery refuses kind for a device of product p.
func checkDelivery(kind Delivery, deviceID string, p *Product) error {
	if !kind.allows(ProtocolOf(p)) {
		return &RefusedError{Kind: kind, DeviceID: deviceID, ProtocolType: p.ProtocolType}
	}
	return nil
}

// Adapter is what one protocol adapter can deliver; a nil field: that
// kind is not delivered over Protocol by this process.
//
// Kick/takeover joins as a field here (a small interface beside
// CommandSender), with its Delivery kind and its rule in Delivery.allows,
// when it is routed; kicks still go through Registry.AddKicker today.
type Adapter struct {
	Protocol      Protocol
	Commands      CommandSender
	Properties    PropertiesSender
	AsyncCommands AsyncCommandDispatcher
	Messages      MessageSender
	SubDevices    SubDeviceNotifier
}

// Router delivers applications' requests to devices. Get it from
// Registry.Router; register adapters before serving traffic.
type Router struct {
	reg *Registry
	log *slog.Logger

	mu       sync.RWMutex
	adapters map[Protocol]Adapter

	// held names the devices that may have PENDING downlink messages, so
	// a connect looks in the store only for those (see pendingHint).
	held *pendingHint
	// desired names the devices that may have desired properties, which
	// a connect sends them (shadowsync.go); syncs tracks those sends.
	desired *pendingHint
	syncs   *desiredSyncs

	// flushing holds the devices whose held messages are being
	// delivered: one delivery per device at a time keeps their order.
	flushMu  sync.Mutex
	flushing map[string]*flushRun

	// sendTimeout bounds the write of one message to a device.
	sendTimeout time.Duration
}

// messageSendTimeout bounds the write of one downlink message: a device
// that does not take it in time has its connection closed by the adapter
// and the message stays PENDING.
const messageSendTimeout = 10 * time.Second

func newRouter(r *Registry) *Router {
	return &Router{reg: r, log: r.log, adapters: make(map[Protocol]Adapter), held: newPendingHint(),
		desired: newPendingHint(), syncs: newDesiredSyncs(),
		flushing: make(map[string]*flushRun), sendTimeout: messageSendTimeout}
}

// loadHeld marks every device with a PENDING message (at start-up).
func (rt *Router) loadHeld(ctx context.Context) error {
	return rt.reg.heldDevices(ctx, rt.held.mark)
}

// Register adds an adapter for its protocol; one per protocol.
func (rt *Router) Register(a Adapter) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if _, dup := rt.adapters[a.Protocol]; dup {
		return fmt.Errorf("registry: an adapter for %s is already registered", a.Protocol)
	}
	rt.adapters[a.Protocol] = a
	return nil
}

func (rt *Router) adapter(p Protocol) Adapter {
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	return rt.adapters[p]
}

// sessionPlace is where a device's live session is.
type sessionPlace int

const (
	sessionNone   sessionPlace = iota // no session: hold or refuse
	sessionLocal                      // an adapter of this process holds it
	sessionRemote                     // another node holds it (NodeLink)
)

// locate says where a device's session is and, when another node holds
// it, which. Without a NodeLink, a session of another node counts as none.
func (rt *Router) locate(ctx context.Context, deviceID string) (sessionPlace, string) {
	s, ok, err := rt.reg.liveSession(ctx, deviceID)
	switch {
	case err != nil:
		rt.log.Error("looking up session", "device_id", deviceID, "err", err)
	case !ok:
	case s.Node == rt.reg.node:
		return sessionLocal, ""
	case rt.reg.link != nil:
		return sessionRemote, s.Node
	}
	return sessionNone, ""
}

// route returns the device's product protocol after refusing kind for it.
func (rt *Router) route(ctx context.Context, kind Delivery, d *Device) (Protocol, error) {
	var p *Product
	err := rt.reg.view(ctx, func(rd Reader) error {
		var err error
		p, err = getProduct(rd, d.ProductID)
		return err
	})
	if err != nil {
		return "", err
	}
	if err := checkDelivery(kind, d.DeviceID, p); err != nil {
		return "", err
	}
	return ProtocolOf(p), nil
}

// SendCommand delivers a synchronous command to a connected MQTT device
// and waits, bounded by ctx, for its response. ErrNotConnected when the
// device has no session, a *RefusedError for other protocols; an error
// unwrapping to ErrNodeUnreachable when the node holding the session
// cannot be reached.
func (rt *Router) SendCommand(ctx context.Context, d *Device, c Command) (res json.RawMessage, err error) {
	defer func() { rt.reg.commands.add(CommandSync, syncOutcome(err)) }()
	p, err := rt.route(ctx, DeliverCommand, d)
	if err != nil {
		return nil, err
	}
	switch place, node := rt.locate(ctx, d.DeviceID); place {
	case sessionLocal:
		if a := rt.adapter(p).Commands; a != nil {
			return a.SendCommand(ctx, d, c)
		}
	case sessionRemote:
		return rt.forwardSync(ctx, node, nodeRequest{Kind: nodeCommand, Device: d.DeviceID, Command: &c})
	}
	return nil, ErrNotConnected
}

// SendProperties asks a connected MQTT device for its properties or to
// set them, and waits, bounded by ctx, for its response; the errors are
// SendCommand's.
func (rt *Router) SendProperties(ctx context.Context, d *Device, p PropertiesRequest) (json.RawMessage, error) {
	proto, err := rt.route(ctx, DeliverProperties, d)
	if err != nil {
		return nil, err
	}
	switch place, node := rt.locate(ctx, d.DeviceID); place {
	case sessionLocal:
		if a := rt.adapter(proto).Properties; a != nil {
			return a.SendProperties(ctx, d, p)
		}
	case sessionRemote:
		return rt.forwardSync(ctx, node, nodeRequest{Kind: nodeProperties, Device: d.DeviceID, Properties: &p})
	}
	return nil, ErrNotConnected
}

// CreateAsyncCommand queues an asynchronous command for an NB-IoT device
// and tells its adapter, which sends it at once ("immediately", the
// device awake) or at the device's next uplink. "immediately" to a device
// with no session is ErrNotConnected; other protocols get a
// *RefusedError. It returns the command as it is once the adapter took it
// (SENT, or PENDING).
func (rt *Router) CreateAsyncCommand(ctx context.Context, project string, d *Device, n NewAsyncCommand) (*AsyncCommand, error) {
	p, err := rt.route(ctx, DeliverAsyncCommand, d)
	if err != nil {
		return nil, err
	}
	a := rt.adapter(p).AsyncCommands
	now := n.SendStrategy == SendImmediately
	place, node := rt.locate(ctx, d.DeviceID)
	// "immediately" means now or not at all: a device that is not
	// registered cannot take it. (A registered device that is asleep
	// keeps it until it wakes up.)
	if now && place != sessionRemote && (a == nil || place != sessionLocal) {
		return nil, ErrNotConnected
	}
	if a != nil {
		if err := a.CheckAsyncCommand(n); err != nil {
			return nil, err
		}
	}
	// Stored before any node is told: a lost notice costs a delay only.
	cmd, err := rt.reg.CreateAsyncCommand(ctx, project, d.DeviceID, n)
	if err != nil {
		return cmd, err
	}
	switch {
	case place == sessionRemote:
		rt.notify(ctx, node, nodeRequest{Kind: nodeAsyncCommand, Device: d.DeviceID, Now: now})
	case a == nil:
		return cmd, nil
	default:
		a.AsyncCommandQueued(ctx, d.DeviceID, now)
	}
	if now {
		// Report what happened to it: SENT, or PENDING while the device
		// sleeps or works through older commands.
		if cur, err := rt.reg.AsyncCommand(ctx, project, d.DeviceID, cmd.CommandID); err == nil {
			cmd = cur
		}
	}
	return cmd, nil
}

// SendMessage sends a downlink message to an MQTT device: it is stored
// PENDING, then delivered at once if the device has a session (after any
// message it already holds), else when it next connects, or TIMEOUT when
// its ttl runs out first. A ttl of 0 to a device with no session is
// ErrNotConnected (nothing is stored). It returns the message as it is
// once the delivery it started ended (or ctx did).
func (rt *Router) SendMessage(ctx context.Context, project string, d *Device, n NewDownlinkMessage) (*DownlinkMessage, error) {
	p, err := rt.route(ctx, DeliverMessage, d)
	if err != nil {
		return nil, err
	}
	if a := rt.adapter(p).Messages; a != nil {
		if err := a.CheckMessage(d, DownMessage{MessageID: n.MessageID, Topic: n.Topic}); err != nil {
			return nil, err
		}
	}
	if place, _ := rt.locate(ctx, d.DeviceID); n.ttl() == 0 && place == sessionNone {
		return nil, ErrNotConnected
	}
	m, err := rt.reg.createDownlink(ctx, project, d.DeviceID, n)
	if err != nil {
		return nil, err
	}
	// Marked after the commit, then presence looked at: a connect either
	// finds the mark or happened before the look, which starts delivery.
	rt.held.mark(d.DeviceID)
	switch place, node := rt.locate(ctx, d.DeviceID); place {
	case sessionNone:
		return m, nil
	case sessionLocal:
		select {
		case <-rt.flush(d.DeviceID):
		case <-ctx.Done():
		}
	case sessionRemote:
		rt.notify(ctx, node, nodeRequest{Kind: nodeMessages, Device: d.DeviceID})
	}
	if cur, err := rt.reg.DownlinkMessage(ctx, project, d.DeviceID, m.MessageID); err == nil {
		m = cur
	}
	return m, nil
}

// SessionReady is called by an adapter once a device's new session can
// take downlinks (for MQTT: after its CONNACK). Held messages and desired
// properties start on their way without holding up the caller; a device
// with neither costs two map look-ups.
func (rt *Router) SessionReady(deviceID string) {
	if _, may := rt.held.may(deviceID); may {
		rt.flush(deviceID)
	}
	rt.desiredOnConnect(deviceID)
}

// SessionReady tells the registry's router that a device's new session can
// take downlinks (see Router.SessionReady).
func (r *Registry) SessionReady(ctx context.Context, deviceID string) {
	r.router.SessionReady(deviceID)
}

// Router returns the registry's delivery router.
func (r *Registry) Router() *Router { return r.router }

// flushRun is the delivery of one device's held messages under way.
type flushRun struct {
	// cur is closed when the pass under way ends; next, when the one
	// asked for meanwhile (again) ends.
	cur, next chan struct{}
	again     bool
}

// flush makes sure a pass over the device's held messages starts after
// this call, and returns a channel closed once that pass has ended.
func (rt *Router) flush(dev string) <-chan struct{} {
	rt.flushMu.Lock()
	defer rt.flushMu.Unlock()
	if run, ok := rt.flushing[dev]; ok {
		run.again = true
		if run.next == nil {
			run.next = make(chan struct{})
		}
		return run.next
	}
	run := &flushRun{cur: make(chan struct{})}
	rt.flushing[dev] = run
	go rt.flushLoop(dev, run)
	return run.cur
}

func (rt *Router) flushLoop(dev string, run *flushRun) {
	for {
		rt.flushHeld(context.Background(), dev)
		rt.flushMu.Lock()
		close(run.cur)
		if !run.again {
			delete(rt.flushing, dev)
			rt.flushMu.Unlock()
			return
		}
		run.again, run.cur, run.next = false, run.next, nil
		rt.flushMu.Unlock()
	}
}

// flushHeld delivers the device's PENDING messages oldest first while it
// has a session: each becomes DELIVERED, or FAILED when the session
// refuses it (IoTDA's error code kept), or TIMEOUT when its ttl ran out.
// When the session is gone the rest stay PENDING, in order, for the next
// one: a later message never overtakes an earlier held one.
func (rt *Router) flushHeld(ctx context.Context, dev string) {
	for {
		mark, may := rt.held.may(dev)
		if !may {
			return
		}
		msgs, err := rt.reg.heldDownlinks(ctx, dev, DownlinksKept)
		if err != nil {
			rt.log.Error("reading held messages", "device_id", dev, "err", err)
			return
		}
		if len(msgs) == 0 {
			rt.held.clear(dev, mark)
			return
		}
		d, err := rt.reg.Device(ctx, dev)
		if err != nil {
			return // deleted meanwhile: its messages went with it
		}
		p, err := rt.route(ctx, DeliverMessage, d)
		if err != nil {
			rt.log.Error("routing held messages", "device_id", dev, "err", err)
			return
		}
		a := rt.adapter(p).Messages
		if a == nil {
			return
		}
		for _, m := range msgs {
			if !m.Deadline.After(rt.reg.now()) {
				if !rt.finish(ctx, m, MessageTimeout, "", "") {
					return
				}
				continue
			}
			if place, _ := rt.locate(ctx, dev); place != sessionLocal {
				return
			}
			sctx, cancel := context.WithTimeout(ctx, rt.sendTimeout)
			err := a.SendMessage(sctx, d, m.wire())
			cancel()
			var ok bool
			switch {
			case err == nil:
				ok = rt.finish(ctx, m, MessageDelivered, "", "")
			case errors.Is(err, ErrNotConnected):
				return // held for its next session
			case errors.Is(err, ErrNotSubscribed):
				ok = rt.finish(ctx, m, MessageFailed, MessageErrNotSubscribed,
					"Operation not allowed. The device has not subscribed to the topic.")
			default:
				ok = rt.finish(ctx, m, MessageFailed, "", err.Error())
			}
			if !ok {
				return
			}
		}
	}
}

// finish records a message's outcome; false if it could not be written.
func (rt *Router) finish(ctx context.Context, m *DownlinkMessage, status MessageStatus, code, msg string) bool {
	if _, _, err := rt.reg.finishDownlink(ctx, m.DeviceID, m.MessageID, status, code, msg); err != nil {
		if !errors.Is(err, ErrNotFound) {
			rt.log.Error("recording message status", "device_id", m.DeviceID, "message_id", m.MessageID,
				"status", status, "err", err)
		}
		return false
	}
	if rt.log.Enabled(ctx, slog.LevelDebug) {
		rt.log.Debug("downlink message finished", "device_id", m.DeviceID, "message_id", m.MessageID, "status", status)
	}
	return true
}
