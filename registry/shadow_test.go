package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func desired(kv ...string) map[string]json.RawMessage {
	m := map[string]json.RawMessage{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = raw(kv[i+1])
	}
	return m
}

// Desired writes merge, delete with null, clear with {}, count versions,
// and a stale version refuses the whole update.
func TestUpdateDesired(t *testing.T) {
	f := newRouterFixture(t)
	ctx := context.Background()
	v := func(n int64) *int64 { return &n }
	sh, err := f.r.UpdateDesired(ctx, "proj", "mq_m1", []DesiredUpdate{
		{ServiceID: "Meter", Desired: desired("limit", "5", "mode", `"eco"`), Version: v(0)},
		{ServiceID: "Light", Desired: desired("on", "true")},
	})
	if err != nil || len(sh.Services) != 2 || sh.Services[0].Version != 1 || string(sh.Services[0].Desired["mode"]) != `"eco"` {
		t.Fatalf("first write: %+v %v", sh, err)
	}
	// A stale version for one service: nothing of the update is written.
	_, err = f.r.UpdateDesired(ctx, "proj", "mq_m1", []DesiredUpdate{
		{ServiceID: "Light", Desired: desired("on", "false")},
		{ServiceID: "Meter", Desired: desired("limit", "6"), Version: v(0)},
	})
	var ve *ShadowVersionError
	if !errors.As(err, &ve) || ve.ServiceID != "Meter" || ve.Current != 1 || ve.Given != 0 {
		t.Fatalf("stale version: %v", err)
	}
	sh, _ = f.r.DeviceShadow(ctx, "proj", "mq_m1")
	if string(sh.Services[1].Desired["on"]) != "true" || sh.Services[1].Version != 1 {
		t.Fatalf("a refused update was written: %+v", sh.Services[1])
	}
	// null deletes one property; the rest is kept.
	sh, err = f.r.UpdateDesired(ctx, "proj", "mq_m1", []DesiredUpdate{{ServiceID: "Meter", Desired: desired("mode", "null", "limit", "7"), Version: v(1)}})
	if err != nil || len(sh.Services[0].Desired) != 1 || string(sh.Services[0].Desired["limit"]) != "7" || sh.Services[0].Version != 2 {
		t.Fatalf("null delete: %+v %v", sh.Services[0], err)
	}
	// {} clears the service's desired section.
	sh, err = f.r.UpdateDesired(ctx, "proj", "mq_m1", []DesiredUpdate{{ServiceID: "Light", Desired: desired()}})
	if err != nil || sh.Services[1].Desired != nil || sh.Services[1].Version != 2 {
		t.Fatalf("clear: %+v %v", sh.Services[1], err)
	}
	// Another project's device is not found.
	if _, err := f.r.UpdateDesired(ctx, "other", "mq_m1", []DesiredUpdate{{ServiceID: "s", Desired: desired()}}); !errors.As(err, new(*NotFoundError)) {
		t.Fatalf("other project: %v", err)
	}
	for _, tc := range []struct {
		name string
		ups  []DesiredUpdate
		want string
	}{
		{"none", nil, "shadow"},
		{"no service", []DesiredUpdate{{Desired: desired()}}, "service_id"},
		{"long service", []DesiredUpdate{{ServiceID: strings.Repeat("s", 65), Desired: desired()}}, "longer than 64"},
		{"twice", []DesiredUpdate{{ServiceID: "a", Desired: desired()}, {ServiceID: "a", Desired: desired()}}, "given twice"},
		{"no desired", []DesiredUpdate{{ServiceID: "a"}}, "desired"},
		{"dot", []DesiredUpdate{{ServiceID: "a", Desired: desired("a.b", "1")}}, "without '.'"},
		{"dollar", []DesiredUpdate{{ServiceID: "a", Desired: desired("$a", "1")}}, "without '.'"},
		{"negative version", []DesiredUpdate{{ServiceID: "a", Desired: desired(), Version: v(-1)}}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.r.UpdateDesired(ctx, "proj", "mq_m1", tc.ups)
			var ve *ValidationError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a ValidationError naming %q", err, tc.want)
			}
		})
	}
}

func TestShadowDelta(t *testing.T) {
	s := &ServiceShadow{ServiceID: "m",
		Properties: desired("a", "1.0", "b", `{"x":1,"y":2}`, "c", `"on"`),
		Desired:    desired("a", "1", "b", `{"y":2,"x":1}`, "c", `"off"`, "d", "4"),
	}
	d := s.Delta()
	if len(d) != 2 || string(d["c"]) != `"off"` || string(d["d"]) != "4" {
		t.Fatalf("delta %s", d)
	}
	s.Properties["c"], s.Properties["d"] = raw(`"off"`), raw("4")
	if d := s.Delta(); d != nil {
		t.Fatalf("reached: delta %s", d)
	}
}

// waitProps waits until the adapter got n properties requests.
func waitProps(t *testing.T, a *fakeAdapter, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := a.gotProps()
		if len(p) >= n {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("adapter got %d properties requests, want %d: %q", len(p), n, p)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settle waits until no desired sync is under way for dev.
func settle(t *testing.T, r *Registry, dev string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.router.syncs.mu.Lock()
		busy := r.router.syncs.busy[dev]
		r.router.syncs.mu.Unlock()
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("desired sync still under way")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// propsSet returns the services a properties set request recorded by
// fakeAdapter carries.
func propsSet(t *testing.T, rec string) string {
	t.Helper()
	parts := strings.SplitN(rec, " ", 5)
	if len(parts) != 5 || parts[1] != "set" {
		t.Fatalf("not a set: %q", rec)
	}
	return parts[4]
}

// A device online gets the delta when it is written; one offline gets it
// when it connects; a report that reaches it sends nothing more, one that
// does not sends the delta again; a device that leaves a set unanswered
// gets none after its reports for the hold, but one when it connects.
func TestDesiredDelivery(t *testing.T) {
	f := newRouterFixture(t)
	ctx := context.Background()
	dev := "mq_m1"
	if _, err := f.r.UpdateDesired(ctx, "proj", dev, []DesiredUpdate{{ServiceID: "Meter", Desired: desired("limit", "5")}}); err != nil {
		t.Fatal(err)
	}
	settle(t, f.r, dev)
	if p := f.mqtt.gotProps(); len(p) != 0 {
		t.Fatalf("offline device sent %q", p)
	}
	f.connect(t, dev)
	if got := propsSet(t, waitProps(t, f.mqtt, 1)[0]); got != `[{"service_id":"Meter","properties":{"limit":5}}]` {
		t.Fatalf("on connect: %s", got)
	}
	settle(t, f.r, dev)

	// A report that does not reach it: the delta again.
	if err := f.r.ReportProperties(ctx, dev, []ServiceProperties{{ServiceID: "Meter", Properties: desired("limit", "3", "v", "1")}}); err != nil {
		t.Fatal(err)
	}
	waitProps(t, f.mqtt, 2)
	settle(t, f.r, dev)
	// One that does: nothing more, and GET shows no delta.
	if err := f.r.ReportProperties(ctx, dev, []ServiceProperties{{ServiceID: "Meter", Properties: desired("limit", "5")}}); err != nil {
		t.Fatal(err)
	}
	settle(t, f.r, dev)
	if sh, _ := f.r.DeviceShadow(ctx, "proj", dev); sh.hasDelta() || string(sh.Services[0].Desired["limit"]) != "5" {
		t.Fatalf("after reaching it: %+v", sh.Services[0])
	}
	// Written while online: sent at once, only what differs.
	if _, err := f.r.UpdateDesired(ctx, "proj", dev, []DesiredUpdate{{ServiceID: "Meter", Desired: desired("v", "2")}}); err != nil {
		t.Fatal(err)
	}
	if got := propsSet(t, waitProps(t, f.mqtt, 3)[2]); got != `[{"service_id":"Meter","properties":{"v":2}}]` {
		t.Fatalf("written online: %s", got)
	}
	settle(t, f.r, dev)

	// Unanswered: held after reports, not after a connect.
	f.mqtt.mu.Lock()
	f.mqtt.propsErr = ErrTimeout
	f.mqtt.mu.Unlock()
	if err := f.r.ReportProperties(ctx, dev, []ServiceProperties{{ServiceID: "Meter", Properties: desired("v", "1")}}); err != nil {
		t.Fatal(err)
	}
	waitProps(t, f.mqtt, 4)
	settle(t, f.r, dev)
	if err := f.r.ReportProperties(ctx, dev, []ServiceProperties{{ServiceID: "Meter", Properties: desired("v", "1")}}); err != nil {
		t.Fatal(err)
	}
	settle(t, f.r, dev)
	if p := f.mqtt.gotProps(); len(p) != 4 {
		t.Fatalf("held device sent %d sets", len(p))
	}
	f.clock.Advance(shadowHold + time.Second)
	if err := f.r.ReportProperties(ctx, dev, []ServiceProperties{{ServiceID: "Meter", Properties: desired("v", "1")}}); err != nil {
		t.Fatal(err)
	}
	waitProps(t, f.mqtt, 5)
	settle(t, f.r, dev)
	f.connect(t, dev)
	waitProps(t, f.mqtt, 6)
	settle(t, f.r, dev)

	// Cleared: a connect sends nothing and forgets the device.
	if _, err := f.r.UpdateDesired(ctx, "proj", dev, []DesiredUpdate{{ServiceID: "Meter", Desired: desired()}}); err != nil {
		t.Fatal(err)
	}
	f.connect(t, dev)
	settle(t, f.r, dev)
	if p := f.mqtt.gotProps(); len(p) != 6 {
		t.Fatalf("cleared desired sent: %q", p[6:])
	}
	if _, may := f.r.router.desired.may(dev); may {
		t.Fatal("the hint still names a device without desired properties")
	}
	// An NB-IoT device's desired values are kept, never sent.
	if _, err := f.r.UpdateDesired(ctx, "proj", "nb_n1", []DesiredUpdate{{ServiceID: "s", Desired: desired("a", "1")}}); err != nil {
		t.Fatal(err)
	}
	f.connect(t, "nb_n1")
	settle(t, f.r, "nb_n1")
	if len(f.nbio.gotProps()) != 0 || len(f.mqtt.gotProps()) != 6 {
		t.Fatal("NB-IoT device's desired values sent")
	}
}

// The hint is rebuilt from the store at start-up: a device whose desired
// values were written before a restart gets them when it connects after.
func TestDesiredSurvivesRestart(t *testing.T) {
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
	setUpRouter(t, r1, clock, true)
	if _, err := r1.UpdateDesired(context.Background(), "proj", "mq_m1", []DesiredUpdate{{ServiceID: "s", Desired: desired("a", "1")}}); err != nil {
		t.Fatal(err)
	}
	r1.Close()

	r2 := open()
	defer r2.Close()
	f := setUpRouter(t, r2, clock, false)
	f.connect(t, "mq_m1")
	if got := propsSet(t, waitProps(t, f.mqtt, 1)[0]); got != `[{"service_id":"s","properties":{"a":1}}]` {
		t.Fatalf("after a restart: %s", got)
	}
	settle(t, r2, "mq_m1")
}

// In a cluster: desired values written through node a reach the device
// whose session node b holds; and b, told by the bus, sends them when the
// device next connects to it.
func TestClusterDesiredReachesTheSessionsNode(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	a, b, _, _ := clusterNodes(t, clock)
	fa := setUpRouter(t, a, clock, true)
	fb := setUpRouter(t, b, clock, false)
	ctx := context.Background()
	s := (&routerFixture{r: b}).connect(t, "mq_m1")
	if _, err := a.UpdateDesired(ctx, "proj", "mq_m1", []DesiredUpdate{{ServiceID: "s", Desired: desired("a", "1")}}); err != nil {
		t.Fatal(err)
	}
	if got := propsSet(t, waitProps(t, fb.mqtt, 1)[0]); got != `[{"service_id":"s","properties":{"a":1}}]` {
		t.Fatalf("b's adapter got %s", got)
	}
	settle(t, a, "mq_m1")
	b.Disconnected("mq_m1", s)
	if _, err := a.UpdateDesired(ctx, "proj", "mq_m1", []DesiredUpdate{{ServiceID: "s", Desired: desired("b", "2")}}); err != nil {
		t.Fatal(err)
	}
	settle(t, a, "mq_m1")
	(&routerFixture{r: b}).connect(t, "mq_m1")
	if got := propsSet(t, waitProps(t, fb.mqtt, 2)[1]); got != `[{"service_id":"s","properties":{"a":1,"b":2}}]` {
		t.Fatalf("b's adapter got %s on the reconnect", got)
	}
	settle(t, b, "mq_m1")
	if len(fa.mqtt.gotProps()) != 0 {
		t.Fatal("a's own adapter was used")
	}
}

// Expired holds are swept once their number doubles, so devices that
// never come back do not accumulate.
func TestDesiredHoldsSwept(t *testing.T) {
	s := newDesiredSyncs()
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range minHeldSweep - 1 {
		dev := fmt.Sprint("d", i)
		if !s.begin(dev, true, t0) {
			t.Fatal("begin refused")
		}
		s.end(dev, t0.Add(shadowHold), t0)
	}
	if s.begin("d0", true, t0.Add(time.Minute)) {
		t.Fatal("a held device synced after a report")
	}
	later := t0.Add(shadowHold + time.Second)
	s.begin("last", true, later)
	s.end("last", later.Add(shadowHold), later)
	if len(s.held) != 1 || s.sweepAt != minHeldSweep {
		t.Fatalf("after the sweep: %d holds, next sweep at %d", len(s.held), s.sweepAt)
	}
}
