package registry

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// newEventRegistry is a registry over an in-memory store with the given
// event bounds and clock.
func newEventRegistry(t *testing.T, s kv.Store, clock *fakeClock, o EventOptions) *Registry {
	t.Helper()
	r, err := New(Options{Store: s, MasterKey: bytes.Repeat([]byte{7}, 32), Now: clock.Now, Events: o})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func memStore(t *testing.T) kv.Store {
	t.Helper()
	s, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: Queues()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// allEvents reads a project's whole stream through Events, in pages of 3
// so that paging is exercised.
func allEvents(t *testing.T, r *Registry, project string) []Event {
	t.Helper()
	var out []Event
	var cursor uint64
	for {
		page, err := r.Events(context.Background(), project, cursor, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) == 0 {
			return out
		}
		out = append(out, page.Events...)
		cursor = page.Next
	}
}

// checkSeqs fails unless each device's events are numbered 1, 2, 3... in
// stream order, and positions increase.
func checkSeqs(t *testing.T, evs []Event) {
	t.Helper()
	last := map[string]uint64{}
	var pos uint64
	for _, e := range evs {
		if e.Position <= pos {
			t.Errorf("position %d after %d", e.Position, pos)
		}
		pos = e.Position
		dev := e.Header.DeviceID
		if e.Resource == ResourceDevice && e.Event == EventCreate {
			last[dev] = 0 // a device created again starts over
		}
		if e.Seq != last[dev]+1 {
			t.Errorf("device %s: seq %d after %d (%s %s)", dev, e.Seq, last[dev], e.Resource, e.Event)
		}
		last[dev] = e.Seq
	}
}

func bodyOf(t *testing.T, e Event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(e.Body, &m); err != nil {
		t.Fatalf("%s %s body %s: %v", e.Resource, e.Event, e.Body, err)
	}
	return m
}

func TestEventKinds(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	r := newEventRegistry(t, memStore(t), clock, EventOptions{})
	ctx := context.Background()
	mustProduct(t, r, "proj", "nb", "CoAP")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "imei1", ProductID: "nb",
		Auth: AuthInfo{Secret: "00112233445566778899aabbccddeeff"}})
	if err != nil {
		t.Fatal(err)
	}
	name := "meter one"
	if _, err := r.UpdateDevice(ctx, "proj", d.DeviceID, DeviceUpdate{DeviceName: &name}); err != nil {
		t.Fatal(err)
	}
	s, err := r.Connected(ctx, d.DeviceID) // activates: a device update, then ONLINE
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddMessage(ctx, d.DeviceID, Message{Topic: "/19/0/0", Payload: []byte(`{"t":21}`)}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddMessage(ctx, d.DeviceID, Message{Topic: "/19/0/0", Payload: []byte{0xff, 0x00}}); err != nil {
		t.Fatal(err)
	}
	if err := r.ReportProperties(ctx, d.DeviceID, []ServiceProperties{{ServiceID: "Meter",
		Properties: map[string]json.RawMessage{"level": json.RawMessage("7")}}}); err != nil {
		t.Fatal(err)
	}
	cmd, err := r.CreateAsyncCommand(ctx, "proj", d.DeviceID, NewAsyncCommand{ServiceID: "Meter", CommandName: "read",
		Paras: json.RawMessage(`{"a":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.StartAsyncCommand(ctx, cmd.CommandID, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := r.FinishAsyncCommand(ctx, cmd.CommandID, AsyncSuccessful, json.RawMessage(`{"code":200}`)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	r.Disconnected(d.DeviceID, s)
	if err := r.flushStatus(ctx); err != nil {
		t.Fatal(err)
	}
	// Another device, never connected, expires.
	gone, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "imei2", ProductID: "nb",
		Auth: AuthInfo{Secret: "00112233445566778899aabbccddeeff", Timeout: 60}})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	if n, err := r.SweepExpired(ctx); err != nil || n != 1 {
		t.Fatalf("expiry sweep: %d, %v", n, err)
	}
	if err := r.DeleteDevice(ctx, "proj", d.DeviceID); err != nil {
		t.Fatal(err)
	}

	evs := allEvents(t, r, "proj")
	checkSeqs(t, evs)
	type want struct {
		dev, resource, event string
		check                func(b map[string]any) error
	}
	field := func(k string, v any) func(map[string]any) error {
		return func(b map[string]any) error {
			if fmt.Sprint(b[k]) != fmt.Sprint(v) {
				return fmt.Errorf("%s = %v, want %v", k, b[k], v)
			}
			return nil
		}
	}
	wants := []want{
		{d.DeviceID, ResourceDevice, EventCreate, func(b map[string]any) error {
			if _, ok := b["auth_info"].(map[string]any)["secret"]; ok {
				return errors.New("secret in event body")
			}
			return field("status", "INACTIVE")(b)
		}},
		{d.DeviceID, ResourceDevice, EventUpdate, field("device_name", name)},
		{d.DeviceID, ResourceDevice, EventUpdate, field("active_time", "20260301T080000Z")}, // activation
		{d.DeviceID, ResourceDeviceMessage, EventReport, func(b map[string]any) error {
			if fmt.Sprint(b["content"]) != "map[t:21]" || b["encoding"] != "none" || b["topic"] != "/19/0/0" {
				return fmt.Errorf("JSON message body %v", b)
			}
			return nil
		}},
		{d.DeviceID, ResourceDeviceMessage, EventReport, func(b map[string]any) error {
			if b["content"] != "/wA=" || b["encoding"] != "base64" {
				return fmt.Errorf("binary message body %v", b)
			}
			return nil
		}},
		{d.DeviceID, ResourceDeviceProperty, EventReport, func(b map[string]any) error {
			svc := b["services"].([]any)[0].(map[string]any)
			if svc["service_id"] != "Meter" || fmt.Sprint(svc["properties"]) != "map[level:7]" || svc["event_time"] != "20260301T080000Z" {
				return fmt.Errorf("property body %v", b)
			}
			return nil
		}},
		{d.DeviceID, ResourceDeviceCommandStatus, EventUpdate, field("status", "PENDING")},
		{d.DeviceID, ResourceDeviceCommandStatus, EventUpdate, field("status", "SENT")},
		{d.DeviceID, ResourceDeviceCommandStatus, EventUpdate, func(b map[string]any) error {
			if b["status"] != "SUCCESSFUL" || fmt.Sprint(b["result"]) != "map[code:200]" || b["command_id"] != cmd.CommandID {
				return fmt.Errorf("command body %v", b)
			}
			return nil
		}},
		// The status flush comes after the writes made before it.
		{d.DeviceID, ResourceDeviceStatus, EventUpdate, func(b map[string]any) error {
			if b["status"] != "ONLINE" || b["last_online_time"] != "20260301T080000Z" || b["status_update_time"] != "2026-03-01T08:00:00.000Z" {
				return fmt.Errorf("online body %v", b)
			}
			return nil
		}},
		{d.DeviceID, ResourceDeviceStatus, EventUpdate, func(b map[string]any) error {
			if b["status"] != "OFFLINE" || b["last_online_time"] != "20260301T080000Z" || b["status_update_time"] != "2026-03-01T08:00:01.000Z" {
				return fmt.Errorf("offline body %v", b)
			}
			return nil
		}},
		{gone.DeviceID, ResourceDevice, EventCreate, field("device_id", gone.DeviceID)},
		{gone.DeviceID, ResourceDevice, EventDelete, field("device_id", gone.DeviceID)}, // expired
		{d.DeviceID, ResourceDevice, EventDelete, field("device_name", name)},
	}
	if len(evs) != len(wants) {
		for _, e := range evs {
			t.Logf("%d %s seq %d %s %s %s", e.Position, e.Header.DeviceID, e.Seq, e.Resource, e.Event, e.Body)
		}
		t.Fatalf("%d events, want %d", len(evs), len(wants))
	}
	ids := map[string]bool{}
	for i, w := range wants {
		e := evs[i]
		if e.Header.DeviceID != w.dev || e.Resource != w.resource || e.Event != w.event {
			t.Errorf("event %d: %s %s %s, want %s %s %s", i, e.Header.DeviceID, e.Resource, e.Event, w.dev, w.resource, w.event)
			continue
		}
		if err := w.check(bodyOf(t, e)); err != nil {
			t.Errorf("event %d (%s %s): %v", i, e.Resource, e.Event, err)
		}
		if e.Header.AppID != "proj" || e.Header.ProductID != "nb" || e.Header.GatewayID != w.dev || e.ProjectID != "proj" {
			t.Errorf("event %d header %+v", i, e.Header)
		}
		if ids[e.ID] || e.ID == "" {
			t.Errorf("event %d: id %q repeated or empty", i, e.ID)
		}
		ids[e.ID] = true
	}
	if other := allEvents(t, r, "other"); len(other) != 0 {
		t.Errorf("another project sees %d events", len(other))
	}
}

// Concurrent uplinks share commits; each device's seqs must still be
// 1..N with no gap or repeat, in the order its own writes were made.
func TestEventSeqsUnderConcurrency(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	r := newEventRegistry(t, memStore(t), clock, EventOptions{})
	ctx := context.Background()
	mustProduct(t, r, "proj", "m", "MQTT")
	const devices, per = 4, 150
	var ids []string
	for i := range devices {
		d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: fmt.Sprint("n", i), ProductID: "m"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.DeviceID)
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		for w := range 3 { // three writers per device
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per / 3 {
					if err := r.AddMessage(ctx, id, Message{Payload: fmt.Appendf(nil, `{"w":%d,"i":%d}`, w, i)}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	evs := allEvents(t, r, "proj")
	checkSeqs(t, evs)
	perWriter := map[string]int{}
	for _, e := range evs {
		if e.Resource != ResourceDeviceMessage {
			continue
		}
		content := bodyOf(t, e)["content"].(map[string]any)
		k := fmt.Sprint(e.Header.DeviceID, "/", content["w"])
		if got := int(content["i"].(float64)); got != perWriter[k] {
			t.Errorf("%s: message %d after %d: out of the writer's order", k, got, perWriter[k]-1)
		}
		perWriter[k]++
	}
	if len(evs) != devices*(1+per) {
		t.Errorf("%d events, want %d", len(evs), devices*(1+per))
	}
}

// A write refused by its own checks leaves no event and uses no seq.
func TestRefusedWriteLeavesNoEvent(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	r := newEventRegistry(t, memStore(t), clock, EventOptions{})
	ctx := context.Background()
	mustProduct(t, r, "proj", "nb", "CoAP")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "imei1", ProductID: "nb"})
	if err != nil {
		t.Fatal(err)
	}
	before := allEvents(t, r, "proj")
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "imei1", ProductID: "nb"}); err == nil {
		t.Fatal("duplicate node_id accepted")
	}
	if err := r.ReportProperties(ctx, d.DeviceID, []ServiceProperties{{ServiceID: ""}}); err == nil {
		t.Fatal("report without service_id accepted")
	}
	cmd, err := r.CreateAsyncCommand(ctx, "proj", d.DeviceID, NewAsyncCommand{Paras: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.FinishAsyncCommand(ctx, cmd.CommandID, AsyncSuccessful, nil); !errors.Is(err, ErrNotSent) {
		t.Fatalf("finish of a PENDING command: %v", err)
	}
	if err := r.AddMessage(ctx, d.DeviceID, Message{Payload: []byte("ok")}); err != nil {
		t.Fatal(err)
	}
	after := allEvents(t, r, "proj")
	checkSeqs(t, after)
	if got := len(after) - len(before); got != 2 { // the command's PENDING and the message
		t.Fatalf("%d events added, want 2", got)
	}
	if last := after[len(after)-1]; last.Seq != 3 || last.Resource != ResourceDeviceMessage {
		t.Errorf("last event: seq %d %s, want 3 %s", last.Seq, last.Resource, ResourceDeviceMessage)
	}
}

func TestEventTrimRespectsConsumers(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	r := newEventRegistry(t, memStore(t), clock, EventOptions{})
	ctx := context.Background()
	mustProduct(t, r, "proj", "m", "MQTT")
	mustProduct(t, r, "solo", "s", "MQTT")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "solo", NodeID: "n", ProductID: "s"}); err != nil {
		t.Fatal(err)
	}
	for range 9 {
		if err := r.AddMessage(ctx, d.DeviceID, Message{Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	evs := allEvents(t, r, "proj") // 10: the create and 9 messages
	for _, name := range []string{"a", "b"} {
		if _, err := r.AddEventConsumer(ctx, "proj", name); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.AckEvents(ctx, "proj", "a", evs[7].Position); err != nil {
		t.Fatal(err)
	}
	commits := r.store.(*badgerkv.Store).Stats().Commits
	if n, err := r.SweepEvents(ctx); err != nil || n != 0 {
		t.Fatalf("trimmed %d (%v) while consumer b acknowledged nothing", n, err)
	}
	if c := r.store.(*badgerkv.Store).Stats().Commits; c != commits {
		t.Errorf("a sweep with nothing to trim made %d commits", c-commits)
	}
	if err := r.AckEvents(ctx, "proj", "b", evs[4].Position); err != nil {
		t.Fatal(err)
	}
	if err := r.AckEvents(ctx, "proj", "b", evs[2].Position); err != nil { // backwards: ignored
		t.Fatal(err)
	}
	if c, _ := r.EventConsumer(ctx, "proj", "b"); c.Cursor != evs[4].Position {
		t.Fatalf("consumer b at %d, want %d", c.Cursor, evs[4].Position)
	}
	if n, err := r.SweepEvents(ctx); err != nil || n != 5 {
		t.Fatalf("trimmed %d (%v), want the 5 both acknowledged", n, err)
	}
	left := allEvents(t, r, "proj")
	if len(left) != 5 || left[0].Position != evs[5].Position {
		t.Fatalf("left %d events from %d", len(left), left[0].Position)
	}
	if _, err := r.Events(ctx, "proj", evs[1].Position, 10); !errors.Is(err, ErrEventsTrimmed) {
		t.Errorf("read from a trimmed cursor: %v", err)
	}
	if _, err := r.Events(ctx, "proj", evs[4].Position, 10); err != nil {
		t.Errorf("read from the acknowledged cursor: %v", err)
	}
	if _, err := r.Events(ctx, "proj", evs[9].Position+1000, 10); !errors.Is(err, ErrCursorAhead) {
		t.Errorf("read from a cursor ahead of the stream: %v", err)
	}
	if err := r.AckEvents(ctx, "proj", "a", evs[9].Position+1000); !errors.Is(err, ErrCursorAhead) {
		t.Errorf("ack ahead of the stream: %v", err)
	}
	// A project without consumers keeps its events.
	if len(allEvents(t, r, "solo")) != 1 {
		t.Error("events of a project without consumers were trimmed")
	}
	// Deleting the laggard lets the other's acknowledgements through.
	if err := r.DeleteEventConsumer(ctx, "proj", "b"); err != nil {
		t.Fatal(err)
	}
	if n, err := r.SweepEvents(ctx); err != nil || n != 3 {
		t.Fatalf("trimmed %d (%v), want 3", n, err)
	}
}

func TestEventTrimBounds(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := memStore(t)
	r := newEventRegistry(t, s, clock, EventOptions{Retention: time.Hour, MaxEvents: 600})
	ctx := context.Background()
	mustProduct(t, r, "proj", "m", "MQTT")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m"})
	if err != nil {
		t.Fatal(err)
	}
	for range 1199 { // 1,200 events: more than two trim batches past the bound
		if err := r.AddMessage(ctx, d.DeviceID, Message{Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := r.SweepEvents(ctx); err != nil || n != 600 {
		t.Fatalf("size trim deleted %d (%v), want 600", n, err)
	}
	left := allEvents(t, r, "proj")
	if len(left) != 600 || left[0].Seq != 601 {
		t.Fatalf("kept %d events from seq %d", len(left), left[0].Seq)
	}
	if n, err := r.SweepEvents(ctx); err != nil || n != 0 {
		t.Fatalf("second sweep deleted %d (%v)", n, err)
	}
	clock.Advance(61 * time.Minute)
	if err := r.AddMessage(ctx, d.DeviceID, Message{Payload: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if n, err := r.SweepEvents(ctx); err != nil || n != 600 {
		t.Fatalf("age trim deleted %d (%v), want 600", n, err)
	}
	left = allEvents(t, r, "proj")
	if len(left) != 1 || left[0].Seq != 1201 {
		t.Fatalf("kept %d events", len(left))
	}

	// Positions keep increasing after a restart, even with every earlier
	// event trimmed.
	clock.Advance(61 * time.Minute)
	if n, err := r.SweepEvents(ctx); err != nil || n != 1 {
		t.Fatalf("trimmed %d (%v)", n, err)
	}
	r.Close()
	r2 := newEventRegistry(t, s, clock, EventOptions{Retention: time.Hour, MaxEvents: 600})
	if err := r2.AddMessage(ctx, d.DeviceID, Message{Payload: []byte("after restart")}); err != nil {
		t.Fatal(err)
	}
	page, err := r2.Events(ctx, "proj", left[0].Position, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 1 || page.Events[0].Position <= left[0].Position || page.Events[0].Seq != 1202 {
		t.Fatalf("after restart: %+v", page.Events)
	}
}

// The hook the downlink message lifecycle calls records its event, in
// sequence with the device's other events, and nothing if its write fails.
func TestDownlinkStatusEvent(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	r := newEventRegistry(t, memStore(t), clock, EventOptions{})
	ctx := context.Background()
	mustProduct(t, r, "proj", "m", "MQTT")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m"})
	if err != nil {
		t.Fatal(err)
	}
	change := func(s DownlinkStatus, fail error) error {
		return r.write(ctx, func(w Writer) error {
			if err := r.downlinkStatusEvent(w, d, s); err != nil {
				return err
			}
			return fail
		})
	}
	if err := change(DownlinkStatus{MessageID: "m1", Name: "hello", Topic: "t", Status: "PENDING", At: clock.Now()}, nil); err != nil {
		t.Fatal(err)
	}
	refused := errors.New("refused")
	if err := change(DownlinkStatus{MessageID: "m1", Status: "DELIVERED", At: clock.Now()}, refused); !errors.Is(err, refused) {
		t.Fatal(err)
	}
	if err := change(DownlinkStatus{MessageID: "m1", Status: "FAILED", At: clock.Now(), ErrorCode: "IOTDA.014112",
		ErrorMsg: "device not subscribed"}, nil); err != nil {
		t.Fatal(err)
	}
	evs := allEvents(t, r, "proj")
	checkSeqs(t, evs)
	if len(evs) != 3 {
		t.Fatalf("%d events, want the create and 2 status changes", len(evs))
	}
	want := []string{
		`{"message_id":"m1","name":"hello","topic":"t","status":"PENDING","timestamp":"20260301T080000Z"}`,
		`{"message_id":"m1","status":"FAILED","timestamp":"20260301T080000Z","error_info":{"error_code":"IOTDA.014112","error_msg":"device not subscribed"}}`,
	}
	for i, e := range evs[1:] {
		if e.Resource != ResourceDeviceMessageStatus || e.Event != EventUpdate || string(e.Body) != want[i] {
			t.Errorf("event %d: %s %s %s", i+1, e.Resource, e.Event, e.Body)
		}
	}
}

// The seq cache answers only for what is committed: within one
// transaction, a write refused after taking a seq gives it back, and
// writes after an accepted one see its seq, not the cached one.
func TestEventSeqCacheWithinTransaction(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	r := newEventRegistry(t, memStore(t), clock, EventOptions{})
	ctx := context.Background()
	mustProduct(t, r, "proj", "m", "MQTT")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m"}) // seq 1, cached
	if err != nil {
		t.Fatal(err)
	}
	refused := errors.New("refused")
	appendFn := func(fail error) func(Writer) error {
		return func(w Writer) error {
			ev, err := messageEvent(d, &Message{MessageID: "x", Payload: []byte("{}")}, clock.Now())
			if err != nil {
				return err
			}
			if err := r.appendEncoded(w, ev); err != nil {
				return err
			}
			return fail
		}
	}
	// Each batch of writes queues behind a held one, so they share one
	// transaction, in order.
	for _, batch := range [][]error{{refused, nil, nil, refused, nil}, {nil, refused}, {nil}} {
		waitQueued, release := holdCommitter(t, r)
		errs := make([]chan error, len(batch))
		for i, fail := range batch {
			errs[i] = make(chan error, 1)
			go func() { errs[i] <- r.write(ctx, appendFn(fail)) }()
			waitQueued(i + 1)
		}
		release()
		for i := range batch {
			if err := <-errs[i]; !errors.Is(err, batch[i]) {
				t.Fatalf("write %d: %v", i, err)
			}
		}
	}
	evs := allEvents(t, r, "proj")
	checkSeqs(t, evs)
	if len(evs) != 6 { // the create and the 5 accepted
		t.Fatalf("%d events, want 6", len(evs))
	}
}

// seqReadCounter counts the reads of event seq keys that reach the store.
type seqReadCounter struct {
	kv.Store
	n *atomic.Int64
}

func (s seqReadCounter) Update(ctx context.Context, fn func(kv.Txn) error) error {
	return s.Store.Update(ctx, func(t kv.Txn) error { return fn(seqReadWriter{t, s.n}) })
}

type seqReadWriter struct {
	kv.Txn
	n *atomic.Int64
}

func (w seqReadWriter) Get(k []byte) ([]byte, error) {
	if bytes.HasPrefix(k, []byte("es\x00")) {
		w.n.Add(1)
	}
	return w.Txn.Get(k)
}

// A device's uplinks take their seqs from the cache: the store is read
// for a seq only when the cache cannot know it.
func TestUplinksReadNoSeqFromStore(t *testing.T) {
	var reads atomic.Int64
	r, _ := newTestRegistryOn(t, nil, func(s kv.Store) kv.Store { return seqReadCounter{s, &reads} })
	ctx := context.Background()
	mustProduct(t, r, "proj", "m", "MQTT")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m"})
	if err != nil {
		t.Fatal(err)
	}
	before := reads.Load() // the create found no seq cached
	for range 20 {
		if err := r.AddMessage(ctx, d.DeviceID, Message{Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if n := reads.Load() - before; n != 0 {
		t.Errorf("20 uplinks read the seq from the store %d times", n)
	}
	checkSeqs(t, allEvents(t, r, "proj"))
}

// With an offline grace, a device that connects again within it is never
// reported offline (neither event is recorded); one that stays away is,
// once the grace has run out, with the time it left; a shutdown reports
// every OFFLINE still held.
func TestOfflineGrace(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	r := newEventRegistry(t, memStore(t), clock, EventOptions{OfflineGrace: 30 * time.Second})
	ctx := context.Background()
	mustProduct(t, r, "proj", "m", "MQTT")
	for _, n := range []string{"flap", "gone", "late"} {
		if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: n, ProductID: "m"}); err != nil {
			t.Fatal(err)
		}
	}
	// statuses lists each device's status events in order (devices in
	// name order: a flush orders devices as it pleases).
	statuses := func() string {
		t.Helper()
		per := map[string][]string{}
		for _, ev := range allEvents(t, r, "proj") {
			if ev.Resource != ResourceDeviceStatus {
				continue
			}
			var b struct {
				Status string `json:"status"`
			}
			if err := json.Unmarshal(ev.Body, &b); err != nil {
				t.Fatal(err)
			}
			per[ev.Header.DeviceID] = append(per[ev.Header.DeviceID], b.Status)
		}
		return fmt.Sprint(per)
	}
	sessions := map[string]Session{}
	for _, id := range []string{"m_flap", "m_gone", "m_late"} {
		s, err := r.Connected(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		sessions[id] = s
	}
	if err := r.flushStatus(ctx); err != nil {
		t.Fatal(err)
	}
	r.Disconnected("m_flap", sessions["m_flap"])
	r.Disconnected("m_gone", sessions["m_gone"])
	leftAt := clock.Now()
	clock.Advance(10 * time.Second)
	if _, err := r.Connected(ctx, "m_flap"); err != nil { // back within the grace
		t.Fatal(err)
	}
	if err := r.flushStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if d, _ := r.Device(ctx, "m_gone"); d.Status != StatusOffline {
		t.Fatalf("REST status of a device that left: %s, want OFFLINE at once", d.Status)
	}
	want := "map[m_flap:[ONLINE] m_gone:[ONLINE] m_late:[ONLINE]]"
	if got := statuses(); got != want {
		t.Fatalf("within the grace: %s, want %s", got, want)
	}
	clock.Advance(25 * time.Second)
	r.Disconnected("m_late", sessions["m_late"])
	if err := r.flushStatus(ctx); err != nil {
		t.Fatal(err)
	}
	want = "map[m_flap:[ONLINE] m_gone:[ONLINE OFFLINE] m_late:[ONLINE]]"
	if got := statuses(); got != want {
		t.Fatalf("after the grace: %s, want %s", got, want)
	}
	for _, ev := range allEvents(t, r, "proj") {
		if ev.Resource == ResourceDeviceStatus && ev.Header.DeviceID == "m_gone" && strings.Contains(string(ev.Body), "OFFLINE") &&
			!ev.Time.Equal(leftAt) {
			t.Errorf("m_gone's OFFLINE at %v, want the time it left, %v", ev.Time, leftAt)
		}
	}
	// A shutdown reports the OFFLINE still held.
	if err := r.flushStatusDue(ctx, time.Unix(1<<40, 0)); err != nil {
		t.Fatal(err)
	}
	if got := statuses(); got != "map[m_flap:[ONLINE] m_gone:[ONLINE OFFLINE] m_late:[ONLINE OFFLINE]]" {
		t.Fatalf("after a shutdown: %s", got)
	}
}

// A session that replaces a live one (a device re-registering from a new
// address, an MQTT client taking over its own connection) moves the status
// time but reports no status change: ONLINE, then OFFLINE only when the
// last session ends.
func TestTakeoverIsNoStatusChange(t *testing.T) {
	for _, grace := range []time.Duration{0, 30 * time.Second} {
		t.Run(fmt.Sprint("grace=", grace), func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
			r := newEventRegistry(t, memStore(t), clock, EventOptions{OfflineGrace: grace})
			ctx := context.Background()
			mustProduct(t, r, "proj", "m", "MQTT")
			if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "d", ProductID: "m"}); err != nil {
				t.Fatal(err)
			}
			var last Session
			for range 3 {
				clock.Advance(time.Second)
				old := last
				s, err := r.Connected(ctx, "m_d")
				if err != nil {
					t.Fatal(err)
				}
				if old != 0 && !r.Disconnected("m_d", old) {
					t.Fatal("the replaced session was not reported superseded")
				}
				last = s
			}
			r.Disconnected("m_d", last)
			if err := r.flushStatusDue(ctx, time.Unix(1<<40, 0)); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ev := range allEvents(t, r, "proj") {
				if ev.Resource == ResourceDeviceStatus {
					var b struct{ Status string }
					if err := json.Unmarshal(ev.Body, &b); err != nil {
						t.Fatal(err)
					}
					got = append(got, b.Status)
				}
			}
			if fmt.Sprint(got) != "[ONLINE OFFLINE]" {
				t.Fatalf("status events %v, want [ONLINE OFFLINE]", got)
			}
		})
	}
}

// A create writes no seq key (its event is seq 1 by definition); the
// device's second event writes it, and the numbering holds across a
// delete and a create under the same id, through the cache or not.
func TestCreateWritesNoSeqKey(t *testing.T) {
	for _, cached := range []bool{true, false} {
		t.Run(fmt.Sprint("cached=", cached), func(t *testing.T) {
			r, s := newTestRegistry(t, nil)
			if !cached {
				r.cache = nil
			}
			ctx := context.Background()
			mustProduct(t, r, "proj", "m", "MQTT")
			seqKey := func() error {
				return s.View(ctx, func(rd Reader) error { _, err := rd.Get(eventSeqKey("m_d")); return err })
			}
			for round := range 2 {
				if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "d", ProductID: "m"}); err != nil {
					t.Fatal(err)
				}
				if err := seqKey(); !errors.Is(err, kv.ErrNotFound) {
					t.Fatalf("round %d: seq key after a create: %v, want none", round, err)
				}
				if err := r.SetFrozen(ctx, "proj", "m_d", true); err != nil {
					t.Fatal(err)
				}
				if err := seqKey(); err != nil {
					t.Fatalf("round %d: seq key after the second event: %v", round, err)
				}
				if err := r.DeleteDevice(ctx, "proj", "m_d"); err != nil {
					t.Fatal(err)
				}
			}
			evs := allEvents(t, r, "proj")
			checkSeqs(t, evs)
			if len(evs) != 6 {
				t.Fatalf("%d events, want create, update, delete twice", len(evs))
			}
		})
	}
}

// Events are trimmed per project (no stream entry is written); a store
// from before that keeps readable events in the old record layout and
// loses its stream entries to the sweep; positions restart above all.
func TestEventTrimPerProjectAndLegacyRecords(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := memStore(t)
	r := newEventRegistry(t, s, clock, EventOptions{Retention: time.Hour, MaxEvents: 1000})
	ctx := context.Background()
	// Project names where one prefixes another: each project's walk
	// must see only its own events.
	for _, p := range []string{"p", "p2", "q"} {
		mustProduct(t, r, p, "m-"+p, "MQTT")
		d, err := r.CreateDevice(ctx, NewDevice{ProjectID: p, NodeID: "n", ProductID: "m-" + p})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := r.AddMessage(ctx, d.DeviceID, Message{Payload: []byte("x")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	countPrefix := func(prefix []byte) int {
		n := 0
		if err := s.View(ctx, func(rd kv.Reader) error {
			return rd.Scan(prefix, nil, false, func(_, _ []byte) (bool, error) { n++; return true, nil })
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := countPrefix(eventStreamPrefix); n != 0 {
		t.Fatalf("%d stream entries written", n)
	}
	if got, err := viewProjects(t, r); err != nil || !reflect.DeepEqual(got, []string{"p", "p2", "q"}) {
		t.Fatalf("projects with events %v (%v)", got, err)
	}

	// A legacy event of project "old": its record is the seq and the JSON,
	// with a stream entry beside it, at a position above every other.
	legacyPos := r.events.last.Load() + 10
	at := clock.Now().UTC()
	js := fmt.Sprintf(`{"id":"legacy","time":%q,"resource":"device.message","event":"report","header":{"app_id":"old","device_id":"od","node_id":"on","product_id":"op","gateway_id":"od","tags":[]},"body":{"id":"m","content":"x","encoding":"none"}}`, at.Format(time.RFC3339Nano))
	if err := s.Update(ctx, func(tx kv.Txn) error {
		if err := tx.Set(eventKey("old", legacyPos), append(binary.BigEndian.AppendUint64(nil, 1), js...)); err != nil {
			return err
		}
		entry := binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano()))
		return tx.Set(eventStreamKey(legacyPos), append(entry, "old"...))
	}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r = newEventRegistry(t, s, clock, EventOptions{Retention: time.Hour, MaxEvents: 1000})
	if last := r.events.last.Load(); last < legacyPos {
		t.Fatalf("position restored at %d, below the legacy event's %d", last, legacyPos)
	}
	old := allEvents(t, r, "old")
	if len(old) != 1 || old[0].ID != "legacy" || old[0].Seq != 1 || !old[0].Time.Equal(at) {
		t.Fatalf("legacy event read as %+v", old)
	}
	// The sweep deletes the stream entry and, within the bounds, no event.
	if n, err := r.SweepEvents(ctx); err != nil || n != 0 {
		t.Fatalf("sweep within the bounds trimmed %d (%v)", n, err)
	}
	if n := countPrefix(eventStreamPrefix); n != 0 {
		t.Fatalf("%d legacy stream entries left", n)
	}
	// Past the age bound, every project's events go, legacy ones too
	// (their time read from the JSON), but for the newest.
	clock.Advance(61 * time.Minute)
	d, err := r.DeviceByProductNode(ctx, "m-q", "n")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddMessage(ctx, d.DeviceID, Message{Payload: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if n, err := r.SweepEvents(ctx); err != nil || n != 13 {
		t.Fatalf("age trim deleted %d (%v), want 13", n, err)
	}
	for p, want := range map[string]int{"p": 0, "p2": 0, "old": 0, "q": 1} {
		if got := len(allEvents(t, r, p)); got != want {
			t.Errorf("project %s kept %d events, want %d", p, got, want)
		}
	}
}

func viewProjects(t *testing.T, r *Registry) ([]string, error) {
	t.Helper()
	var out []string
	err := r.view(context.Background(), func(rd Reader) error {
		var err error
		out, err = eventProjects(rd)
		return err
	})
	return out, err
}
