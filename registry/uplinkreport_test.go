package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// shadowFailStore fails every write of a shadow while armed.
type shadowFailStore struct {
	kv.Store
	armed atomic.Bool
}

var errShadowWrite = errors.New("injected shadow write failure")

func (s *shadowFailStore) Update(ctx context.Context, fn func(kv.Txn) error) error {
	return s.Store.Update(ctx, func(t kv.Txn) error { return fn(shadowFailTxn{t, s}) })
}

type shadowFailTxn struct {
	kv.Txn
	s *shadowFailStore
}

func (t shadowFailTxn) Set(k, v []byte) error {
	if t.s.armed.Load() && bytes.HasPrefix(k, shadowKey("")) {
		return errShadowWrite
	}
	return t.Txn.Set(k, v)
}

func TestReportMessageAndProperties(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	var fail *shadowFailStore
	r, _ := newTestRegistryOn(t, clock, func(s kv.Store) kv.Store { fail = &shadowFailStore{Store: s}; return fail })
	ctx := context.Background()
	mustProduct(t, r, "proj", "nb", "CoAP")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "imei1", ProductID: "nb"})
	if err != nil {
		t.Fatal(err)
	}
	before := allEvents(t, r, "proj")
	at := clock.Now().Add(-time.Minute)
	report := []ServiceProperties{{ServiceID: "LwM2M", EventTime: at,
		Properties: map[string]json.RawMessage{"/3/0/9": json.RawMessage("87")}}}
	if err := r.ReportMessageAndProperties(ctx, d.DeviceID, Message{Topic: "/dp", Payload: []byte(`[{"path":"/3/0/9"}]`)}, report); err != nil {
		t.Fatal(err)
	}
	if got := keptPayloads(t, r, "proj", d.DeviceID); len(got) != 1 || got[0] != `[{"path":"/3/0/9"}]` {
		t.Fatalf("messages %q", got)
	}
	sh, err := r.ShadowOf(ctx, d.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	if len(sh.Services) != 1 || string(sh.Services[0].Properties["/3/0/9"]) != "87" || !sh.Services[0].EventTime.Equal(at) {
		t.Fatalf("shadow %+v", sh.Services)
	}
	evs := allEvents(t, r, "proj")
	checkSeqs(t, evs)
	added := evs[len(before):]
	if len(added) != 2 || added[0].Resource != ResourceDeviceMessage || added[1].Resource != ResourceDeviceProperty {
		t.Fatalf("events added: %+v", added)
	}

	// Refused before the write, or failing inside it: neither is kept.
	if err := r.ReportMessageAndProperties(ctx, d.DeviceID, Message{Payload: []byte("x")}, []ServiceProperties{{}}); err == nil {
		t.Fatal("a report without service_id was accepted")
	}
	fail.armed.Store(true)
	if err := r.ReportMessageAndProperties(ctx, d.DeviceID, Message{Payload: []byte("y")}, report); !errors.Is(err, errShadowWrite) {
		t.Fatalf("failing shadow write: %v", err)
	}
	fail.armed.Store(false)
	if got := keptPayloads(t, r, "proj", d.DeviceID); len(got) != 1 {
		t.Fatalf("a refused or failed report kept its message: %q", got)
	}
	if n := len(allEvents(t, r, "proj")); n != len(evs) {
		t.Fatalf("a refused or failed report added %d events", n-len(evs))
	}
	if err := r.ReportMessageAndProperties(ctx, "nosuch", Message{Payload: []byte("z")}, report); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown device: %v", err)
	}
}
