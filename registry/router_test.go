package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// fakeAdapter records what the router hands it; sendErr decides the
// outcome of each message write.
type fakeAdapter struct {
	mu       sync.Mutex
	commands []string // device ids
	props    []string // "device op request_id service_id services"
	propsErr error    // what SendProperties answers (nil: a response)
	queued   []string // device ids (async commands)
	mayWait  []string // device ids, "" for all (AsyncCommandsMayWait)
	messages []string // message ids, in the order written
	sendErr  func(m DownMessage) error
	checkErr error
}

func (f *fakeAdapter) SendCommand(_ context.Context, d *Device, c Command) (json.RawMessage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands = append(f.commands, d.DeviceID)
	return json.RawMessage(`{"ok":true}`), nil
}

func (f *fakeAdapter) SendProperties(_ context.Context, d *Device, p PropertiesRequest) (json.RawMessage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.props = append(f.props, fmt.Sprintf("%s %s %s %s %s", d.DeviceID, p.Op, p.RequestID, p.ServiceID, p.Services))
	if f.propsErr != nil {
		return nil, f.propsErr
	}
	return json.RawMessage(`{"result_code":0}`), nil
}

func (f *fakeAdapter) gotProps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.props...)
}

func (f *fakeAdapter) CheckAsyncCommand(NewAsyncCommand) error { return nil }

func (f *fakeAdapter) AsyncCommandQueued(_ context.Context, dev string, _ bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queued = append(f.queued, dev)
}

func (f *fakeAdapter) AsyncCommandsMayWait(dev string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mayWait = append(f.mayWait, dev)
}

func (f *fakeAdapter) CheckMessage(*Device, DownMessage) error { return f.checkErr }

func (f *fakeAdapter) SendMessage(_ context.Context, _ *Device, m DownMessage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sendErr != nil {
		if err := f.sendErr(m); err != nil {
			return err
		}
	}
	f.messages = append(f.messages, m.MessageID)
	return nil
}

func (f *fakeAdapter) got() (commands, queued, messages []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...), append([]string(nil), f.queued...), append([]string(nil), f.messages...)
}

// routerFixture: a registry with an MQTT device (mq_m1), an LwM2M device
// (nb_n1) and an HTTP one (ht_h1), and a fake adapter per protocol.
type routerFixture struct {
	r          *Registry
	clock      *fakeClock
	mqtt, nbio *fakeAdapter
}

func newRouterFixture(t *testing.T) *routerFixture {
	t.Helper()
	clock := &fakeClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	r, _ := newTestRegistry(t, clock)
	return setUpRouter(t, r, clock, true)
}

func setUpRouter(t *testing.T, r *Registry, clock *fakeClock, seed bool) *routerFixture {
	t.Helper()
	f := &routerFixture{r: r, clock: clock, mqtt: &fakeAdapter{}, nbio: &fakeAdapter{}}
	if seed {
		mustProduct(t, r, "proj", "nb", "CoAP")
		mustProduct(t, r, "proj", "mq", "MQTT")
		mustProduct(t, r, "proj", "ht", "HTTP")
		for _, n := range []NewDevice{{NodeID: "n1", ProductID: "nb"}, {NodeID: "m1", ProductID: "mq"}, {NodeID: "h1", ProductID: "ht"}} {
			n.ProjectID = "proj"
			if _, err := r.CreateDevice(context.Background(), n); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, a := range []Adapter{
		{Protocol: ProtocolMQTT, Commands: f.mqtt, Properties: f.mqtt, Messages: f.mqtt},
		{Protocol: ProtocolLwM2M, AsyncCommands: f.nbio},
	} {
		if err := r.Router().Register(a); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *routerFixture) device(t *testing.T, id string) *Device {
	t.Helper()
	d, err := f.r.Device(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// connect opens a session and waits for the held-message delivery it
// starts to end.
func (f *routerFixture) connect(t *testing.T, id string) Session {
	t.Helper()
	s, err := f.r.Connected(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	f.r.SessionReady(context.Background(), id)
	<-f.r.router.flush(id) // a pass begun after the one SessionReady started
	return s
}

func (f *routerFixture) send(t *testing.T, id, msgID string) *DownlinkMessage {
	t.Helper()
	m, err := f.r.Router().SendMessage(context.Background(), "proj", f.device(t, id),
		NewDownlinkMessage{MessageID: msgID, Message: json.RawMessage(`"hi"`), Payload: []byte("hi")})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (f *routerFixture) status(t *testing.T, id, msgID string) *DownlinkMessage {
	t.Helper()
	m, err := f.r.DownlinkMessage(context.Background(), "proj", id, msgID)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRouterRoutesByProtocol(t *testing.T) {
	f := newRouterFixture(t)
	ctx := context.Background()
	rt := f.r.Router()
	for _, id := range []string{"mq_m1", "nb_n1", "ht_h1"} {
		if _, err := f.r.Connected(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	paras := NewAsyncCommand{Paras: json.RawMessage(`{"a":1}`)}
	msg := NewDownlinkMessage{Message: json.RawMessage(`"x"`), Payload: []byte("x")}
	for _, tc := range []struct {
		name   string
		dev    string
		send   func(d *Device) error
		refuse Delivery // "": delivered
	}{
		{"sync command to MQTT", "mq_m1", func(d *Device) error { _, err := rt.SendCommand(ctx, d, Command{CommandID: "c"}); return err }, ""},
		{"sync command to LwM2M", "nb_n1", func(d *Device) error { _, err := rt.SendCommand(ctx, d, Command{CommandID: "c"}); return err }, DeliverCommand},
		{"sync command to HTTP", "ht_h1", func(d *Device) error { _, err := rt.SendCommand(ctx, d, Command{CommandID: "c"}); return err }, DeliverCommand},
		{"properties get from MQTT", "mq_m1", func(d *Device) error {
			_, err := rt.SendProperties(ctx, d, PropertiesRequest{Op: PropertiesGet, RequestID: "r1", ServiceID: "s"})
			return err
		}, ""},
		{"properties set to LwM2M", "nb_n1", func(d *Device) error {
			_, err := rt.SendProperties(ctx, d, PropertiesRequest{Op: PropertiesSet, RequestID: "r2", Services: json.RawMessage(`[]`)})
			return err
		}, DeliverProperties},
		{"properties get from HTTP", "ht_h1", func(d *Device) error {
			_, err := rt.SendProperties(ctx, d, PropertiesRequest{Op: PropertiesGet, RequestID: "r3"})
			return err
		}, DeliverProperties},
		{"async command to LwM2M", "nb_n1", func(d *Device) error { _, err := rt.CreateAsyncCommand(ctx, "proj", d, paras); return err }, ""},
		{"async command to MQTT", "mq_m1", func(d *Device) error { _, err := rt.CreateAsyncCommand(ctx, "proj", d, paras); return err }, DeliverAsyncCommand},
		{"message to MQTT", "mq_m1", func(d *Device) error { _, err := rt.SendMessage(ctx, "proj", d, msg); return err }, ""},
		{"message to LwM2M", "nb_n1", func(d *Device) error { _, err := rt.SendMessage(ctx, "proj", d, msg); return err }, DeliverMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.send(f.device(t, tc.dev))
			var re *RefusedError
			switch {
			case tc.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refuse != "" && (!errors.As(err, &re) || re.Kind != tc.refuse || !errors.Is(err, ErrUnsupported)):
				t.Fatalf("got %v, want a refusal of %s", err, tc.refuse)
			}
		})
	}
	// Each kind reached its own protocol's adapter and no other.
	cmds, queued, msgs := f.mqtt.got()
	if len(cmds) != 1 || cmds[0] != "mq_m1" || len(queued) != 0 || len(msgs) != 1 {
		t.Fatalf("MQTT adapter got commands %v, async %v, messages %v", cmds, queued, msgs)
	}
	if p := f.mqtt.gotProps(); len(p) != 1 || p[0] != "mq_m1 get r1 s " {
		t.Fatalf("MQTT adapter got properties requests %q", p)
	}
	cmds, queued, msgs = f.nbio.got()
	if len(cmds) != 0 || len(queued) != 1 || queued[0] != "nb_n1" || len(msgs) != 0 || len(f.nbio.gotProps()) != 0 {
		t.Fatalf("LwM2M adapter got commands %v, async %v, messages %v", cmds, queued, msgs)
	}
	// No async command was stored for the refused MQTT device.
	if l, err := f.r.ListAsyncCommands(ctx, "proj", "mq_m1", AsyncCommandFilter{}, Page{Limit: 10}); err != nil || l.Count != 0 {
		t.Fatalf("MQTT device commands: %v %v", l, err)
	}
}

func TestRouterNeedsSession(t *testing.T) {
	f := newRouterFixture(t)
	ctx := context.Background()
	rt := f.r.Router()
	if _, err := rt.SendCommand(ctx, f.device(t, "mq_m1"), Command{CommandID: "c"}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("sync command to an offline device: %v", err)
	}
	if _, err := rt.SendProperties(ctx, f.device(t, "mq_m1"), PropertiesRequest{Op: PropertiesGet, RequestID: "r"}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("properties get from an offline device: %v", err)
	}
	if _, err := rt.CreateAsyncCommand(ctx, "proj", f.device(t, "nb_n1"),
		NewAsyncCommand{Paras: json.RawMessage(`{}`), SendStrategy: SendImmediately}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("immediately to an unregistered device: %v", err)
	}
	// delay: kept PENDING, and the adapter told (it sends at the next uplink).
	c, err := rt.CreateAsyncCommand(ctx, "proj", f.device(t, "nb_n1"), NewAsyncCommand{Paras: json.RawMessage(`{}`)})
	if err != nil || c.Status != AsyncPending {
		t.Fatalf("delay: %v %v", c, err)
	}
	if _, queued, _ := f.nbio.got(); len(queued) != 1 {
		t.Fatalf("adapter not told of the queued command: %v", queued)
	}
	zero := 0
	if _, err := rt.SendMessage(ctx, "proj", f.device(t, "mq_m1"), NewDownlinkMessage{Message: json.RawMessage(`1`), TTL: &zero}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("ttl 0 to an offline device: %v", err)
	}
	if l, _ := f.r.DownlinkMessages(ctx, "proj", "mq_m1"); len(l) != 0 {
		t.Fatalf("ttl 0 message stored: %v", l)
	}
}

func TestHeldMessagesDeliveredInOrderOnConnect(t *testing.T) {
	f := newRouterFixture(t)
	for _, id := range []string{"m1", "m2", "m3"} {
		if m := f.send(t, "mq_m1", id); m.Status != MessagePending {
			t.Fatalf("%s to an offline device: %s", id, m.Status)
		}
		f.clock.Advance(time.Second)
	}
	if _, _, msgs := f.mqtt.got(); len(msgs) != 0 {
		t.Fatalf("delivered while offline: %v", msgs)
	}
	f.connect(t, "mq_m1")
	if _, _, msgs := f.mqtt.got(); fmt.Sprint(msgs) != "[m1 m2 m3]" {
		t.Fatalf("delivered %v, want [m1 m2 m3]", msgs)
	}
	for _, id := range []string{"m1", "m2", "m3"} {
		if m := f.status(t, "mq_m1", id); m.Status != MessageDelivered || m.FinishedTime.IsZero() || !m.Deadline.IsZero() {
			t.Fatalf("%s: %+v", id, m)
		}
	}
	// Online: delivered at once, and the answer says so.
	if m := f.send(t, "mq_m1", "m4"); m.Status != MessageDelivered {
		t.Fatalf("to an online device: %s", m.Status)
	}
	if l, _ := f.r.DownlinkMessages(context.Background(), "proj", "mq_m1"); len(l) != 4 || l[0].MessageID != "m1" || l[3].MessageID != "m4" {
		t.Fatalf("listing: %v", l)
	}
	// Each status change is an event, in order: PENDING at creation, then
	// DELIVERED (m4 too: it is stored, then written to the online device).
	var got []string
	for _, ev := range allEvents(t, f.r, "proj") {
		if ev.Resource != ResourceDeviceMessageStatus {
			continue
		}
		var b struct {
			MessageID string `json:"message_id"`
			Status    string `json:"status"`
		}
		if err := json.Unmarshal(ev.Body, &b); err != nil {
			t.Fatal(err)
		}
		got = append(got, b.MessageID+":"+b.Status)
	}
	want := "[m1:PENDING m2:PENDING m3:PENDING m1:DELIVERED m2:DELIVERED m3:DELIVERED m4:PENDING m4:DELIVERED]"
	if fmt.Sprint(got) != want {
		t.Fatalf("message status events %v, want %s", got, want)
	}
}

// A write that finds the session gone leaves that message and every later
// one PENDING, in order, for the next session; a refusal by the session
// fails only that message, with IoTDA's error code.
func TestHeldMessageOutcomes(t *testing.T) {
	f := newRouterFixture(t)
	for _, id := range []string{"a", "b", "c", "d"} {
		f.send(t, "mq_m1", id)
	}
	f.mqtt.sendErr = func(m DownMessage) error {
		switch m.MessageID {
		case "a":
			return ErrNotSubscribed
		case "b":
			return errors.New("too many unacknowledged downlinks")
		case "c":
			return ErrNotConnected
		}
		return nil
	}
	f.connect(t, "mq_m1")
	for _, tc := range []struct {
		id     string
		status MessageStatus
		code   string
	}{
		{"a", MessageFailed, MessageErrNotSubscribed},
		{"b", MessageFailed, ""},
		{"c", MessagePending, ""},
		{"d", MessagePending, ""},
	} {
		m := f.status(t, "mq_m1", tc.id)
		if m.Status != tc.status || m.ErrorCode != tc.code || (tc.status == MessageFailed && m.ErrorMsg == "") {
			t.Errorf("%s: %s %q %q, want %s %q", tc.id, m.Status, m.ErrorCode, m.ErrorMsg, tc.status, tc.code)
		}
	}
	if _, _, msgs := f.mqtt.got(); len(msgs) != 0 {
		t.Fatalf("d overtook c: %v", msgs)
	}
	// The next session takes c, then d.
	f.mqtt.sendErr = nil
	f.connect(t, "mq_m1")
	if _, _, msgs := f.mqtt.got(); fmt.Sprint(msgs) != "[c d]" {
		t.Fatalf("next session got %v, want [c d]", msgs)
	}
}

// A message sent while earlier ones are held goes after them even though
// the device is online by then.
func TestNewMessageWaitsBehindHeldOnes(t *testing.T) {
	f := newRouterFixture(t)
	f.send(t, "mq_m1", "old")
	// Online, but its session not yet ready (no SessionReady): the new
	// message's own delivery takes the held one first.
	if _, err := f.r.Connected(context.Background(), "mq_m1"); err != nil {
		t.Fatal(err)
	}
	if m := f.send(t, "mq_m1", "new"); m.Status != MessageDelivered {
		t.Fatalf("new: %s", m.Status)
	}
	if _, _, msgs := f.mqtt.got(); fmt.Sprint(msgs) != "[old new]" {
		t.Fatalf("delivered %v, want [old new]", msgs)
	}
}

func TestHeldMessageTimesOut(t *testing.T) {
	f := newRouterFixture(t)
	ctx := context.Background()
	five := 5
	m, err := f.r.Router().SendMessage(ctx, "proj", f.device(t, "mq_m1"), NewDownlinkMessage{MessageID: "short", Message: json.RawMessage(`1`), TTL: &five})
	if err != nil {
		t.Fatal(err)
	}
	f.send(t, "mq_m1", "long") // default ttl: a day
	if n, err := f.r.sweepDownlinks(ctx); err != nil || n != 0 {
		t.Fatalf("sweep before the ttl: %d %v", n, err)
	}
	f.clock.Advance(5*time.Minute + time.Second)
	if n, err := f.r.sweepDownlinks(ctx); err != nil || n != 1 {
		t.Fatalf("sweep after the ttl: %d %v", n, err)
	}
	if got := f.status(t, "mq_m1", m.MessageID); got.Status != MessageTimeout || got.FinishedTime.IsZero() {
		t.Fatalf("short: %+v", got)
	}
	s := f.connect(t, "mq_m1")
	if _, _, msgs := f.mqtt.got(); fmt.Sprint(msgs) != "[long]" {
		t.Fatalf("delivered %v, want [long]", msgs)
	}
	// A message whose ttl ran out before the sweep saw it is not sent
	// either.
	f.r.Disconnected("mq_m1", s)
	m, err = f.r.Router().SendMessage(ctx, "proj", f.device(t, "mq_m1"), NewDownlinkMessage{MessageID: "stale", Message: json.RawMessage(`1`), TTL: &five})
	if err != nil || m.Status != MessagePending {
		t.Fatalf("stale: %v %v", m, err)
	}
	f.clock.Advance(10 * time.Minute)
	f.connect(t, "mq_m1")
	if got := f.status(t, "mq_m1", "stale"); got.Status != MessageTimeout {
		t.Fatalf("stale: %s", got.Status)
	}
	if _, _, msgs := f.mqtt.got(); fmt.Sprint(msgs) != "[long]" {
		t.Fatalf("delivered %v after the ttl", msgs)
	}
}

func TestDownlinkMessageLimits(t *testing.T) {
	f := newRouterFixture(t)
	ctx := context.Background()
	rt := f.r.Router()
	d := f.device(t, "mq_m1")
	for _, tc := range []struct {
		name  string
		in    NewDownlinkMessage
		field string
	}{
		{"ttl not a multiple of 5", NewDownlinkMessage{TTL: ptr(7)}, "ttl"},
		{"ttl over a day", NewDownlinkMessage{TTL: ptr(1445)}, "ttl"},
		{"ttl negative", NewDownlinkMessage{TTL: ptr(-5)}, "ttl"},
		{"message_id charset", NewDownlinkMessage{MessageID: "a b"}, "message_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rt.SendMessage(ctx, "proj", d, tc.in)
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field {
				t.Fatalf("got %v, want invalid %s", err, tc.field)
			}
		})
	}
	f.mqtt.checkErr = &ValidationError{Field: "topic", Reason: "not the device's"}
	if _, err := rt.SendMessage(ctx, "proj", d, NewDownlinkMessage{Topic: "$oc/devices/other/user/x"}); !errors.As(err, new(*ValidationError)) {
		t.Fatalf("adapter's topic check: %v", err)
	}
	f.mqtt.checkErr = nil
	f.send(t, "mq_m1", "dup")
	var ce *ConflictError
	if _, err := rt.SendMessage(ctx, "proj", d, NewDownlinkMessage{MessageID: "dup"}); !errors.As(err, &ce) || ce.Field != UniqueMessageID {
		t.Fatalf("duplicate message_id: %v", err)
	}
	// 20 held: the 21st is refused rather than dropping one held.
	for i := 1; i < DownlinksKept; i++ {
		f.send(t, "mq_m1", fmt.Sprintf("h%02d", i))
	}
	if _, err := rt.SendMessage(ctx, "proj", d, NewDownlinkMessage{MessageID: "over"}); !errors.Is(err, ErrQuota) {
		t.Fatalf("21st held message: %v", err)
	}
	// Once delivered, the oldest finished one makes room.
	f.connect(t, "mq_m1")
	f.send(t, "mq_m1", "next")
	l, _ := f.r.DownlinkMessages(ctx, "proj", "mq_m1")
	if len(l) != DownlinksKept || l[0].MessageID != "h01" || l[len(l)-1].MessageID != "next" {
		t.Fatalf("kept %d, first %s", len(l), l[0].MessageID)
	}
	// Deleting the device deletes its messages.
	if err := f.r.DeleteDevice(ctx, "proj", "mq_m1"); err != nil {
		t.Fatal(err)
	}
	err := f.r.view(context.Background(), func(rd Reader) error {
		for _, p := range [][]byte{prefixKey("dm", "mq_m1"), prefixKey("dl", "mq_m1"), prefixKey("dh", "mq_m1"), downlinkDeadlinePrefix} {
			if err := rd.Scan(p, nil, false, func(k, _ []byte) (bool, error) { return false, fmt.Errorf("left behind: %q", k) }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Held messages survive a restart, and the restarted registry knows which
// devices hold some without being told again.
func TestHeldMessagesSurviveRestart(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	base, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: Queues()})
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	open := func() *Registry {
		r, err := New(Options{Store: base, MasterKey: bytes.Repeat([]byte{7}, 32), Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r1 := open()
	f := setUpRouter(t, r1, clock, true)
	f.send(t, "mq_m1", "kept")
	r1.Close()

	r2 := open()
	defer r2.Close()
	f = setUpRouter(t, r2, clock, false)
	f.connect(t, "mq_m1")
	if _, _, msgs := f.mqtt.got(); fmt.Sprint(msgs) != "[kept]" {
		t.Fatalf("after a restart: %v", msgs)
	}
}

func ptr[T any](v T) *T { return &v }

// The sweep of held messages finds a deadline written before those it has
// already passed (whatever the engine does to skip the index's front).
func TestDownlinkSweepFindsEarlierDeadlines(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	r, _ := newTestRegistry(t, clock)
	f := setUpRouter(t, r, clock, true)
	ctx := context.Background()
	f.send(t, "mq_m1", "far") // a day
	f.connect(t, "mq_m1")     // delivers far: its deadline is deleted
	f.send(t, "mq_m1", "now") // delivered at once
	f.r.presence.Drop(context.Background(), "mq_m1")
	f.send(t, "mq_m1", "left") // held, a day
	for range 2 {
		if n, err := r.sweepDownlinks(ctx); err != nil || n != 0 {
			t.Fatalf("sweep: %d %v", n, err)
		}
	}
	five := 5
	near, err := f.r.Router().SendMessage(ctx, "proj", f.device(t, "mq_m1"), NewDownlinkMessage{MessageID: "near", Message: json.RawMessage(`1`), TTL: &five})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(6 * time.Minute)
	if n, err := r.sweepDownlinks(ctx); err != nil || n != 1 {
		t.Fatalf("sweep after near's ttl: %d %v", n, err)
	}
	if m := f.status(t, "mq_m1", near.MessageID); m.Status != MessageTimeout {
		t.Fatalf("near: %s", m.Status)
	}
}

// The scans of a device's message lists seek to their oldest live entry,
// past the entries trimmed or delivered before.
func TestDownlinkListsSeekPastDeleted(t *testing.T) {
	for _, tc := range []struct {
		list string
		scan func(f *routerFixture) error
		// oldest is the seq the scan must start from.
		oldest func(t *testing.T, f *routerFixture) string
	}{
		{"dl", func(f *routerFixture) error {
			_, err := f.r.DownlinkMessages(context.Background(), "proj", "mq_m1")
			return err
		}, func(t *testing.T, f *routerFixture) string {
			l, _ := f.r.DownlinkMessages(context.Background(), "proj", "mq_m1")
			return l[0].Seq
		}},
		{"dh", func(f *routerFixture) error {
			_, err := f.r.heldDownlinks(context.Background(), "mq_m1", DownlinksKept)
			return err
		}, func(t *testing.T, f *routerFixture) string { return f.status(t, "mq_m1", "held").Seq }},
	} {
		t.Run(tc.list, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
			prefix := prefixKey(tc.list, "mq_m1")
			r, rec := recordedRegistry(t, prefix, clock)
			f := setUpRouter(t, r, clock, true)
			if _, err := r.Connected(context.Background(), "mq_m1"); err != nil {
				t.Fatal(err)
			}
			for i := range DownlinksKept + 5 { // delivered at once; the first 5 trimmed
				f.send(t, "mq_m1", fmt.Sprint("m", i))
			}
			f.r.presence.Drop(context.Background(), "mq_m1")
			f.send(t, "mq_m1", "held") // trims m5
			if err := tc.scan(f); err != nil {
				t.Fatal(err)
			}
			if from, want := rec.lastFrom(), append(prefix, tc.oldest(t, f)...); !bytes.Equal(from, want) {
				t.Fatalf("scan from %q, want %q", from, want)
			}
		})
	}
}
