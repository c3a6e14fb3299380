package api

import (
	"context"
	"fmt"
	"testing"

	"github.com/iotgate/iotgate/registry"
)

// eventsFixture gives p1 a device with 1 create and 5 message events, and
// p2 a device with its create event.
func eventsFixture(t *testing.T) (*Server, *registry.Registry) {
	t.Helper()
	s, reg := newTestServer(t)
	ctx := context.Background()
	for _, p := range []string{"p1", "p2"} {
		if _, err := reg.CreateProduct(ctx, registry.Product{ProjectID: p, ProductID: "m" + p, Name: "M", DeviceType: "x", ProtocolType: "MQTT"}); err != nil {
			t.Fatal(err)
		}
		if _, err := reg.CreateDevice(ctx, registry.NewDevice{ProjectID: p, ProductID: "m" + p, NodeID: "n"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if err := reg.AddMessage(ctx, "mp1_n", registry.Message{Topic: "t", Payload: fmt.Appendf(nil, `{"i":%d}`, i)}); err != nil {
			t.Fatal(err)
		}
	}
	return s, reg
}

func TestEventsPaging(t *testing.T) {
	s, _ := eventsFixture(t)
	var got []map[string]any
	cursor := ""
	for range 10 {
		st, out := call(s, "tok1", "GET", "/v5/iot/p1/events?limit=4&cursor="+cursor, "")
		if st != 200 {
			t.Fatalf("read: %d %v", st, out)
		}
		evs := out["events"].([]any)
		if len(evs) == 0 {
			if out["next_cursor"] != cursor {
				t.Errorf("empty page moved the cursor from %q to %v", cursor, out["next_cursor"])
			}
			break
		}
		for _, e := range evs {
			got = append(got, e.(map[string]any))
		}
		cursor = out["next_cursor"].(string)
		if last := got[len(got)-1]; last["cursor"] != cursor {
			t.Errorf("next_cursor %s is not the last event's cursor %v", cursor, last["cursor"])
		}
	}
	if len(got) != 6 {
		t.Fatalf("read %d events, want 6", len(got))
	}
	first := got[0]
	hdr := first["notify_data"].(map[string]any)["header"].(map[string]any)
	if first["resource"] != "device" || first["event"] != "create" || hdr["device_id"] != "mp1_n" || hdr["app_id"] != "p1" ||
		len(first["event_time"].(string)) != len("20151212T121212Z") || first["seq"] != float64(1) {
		t.Errorf("first event: %v", first)
	}
	for i, e := range got[1:] {
		body := e["notify_data"].(map[string]any)["body"].(map[string]any)
		if e["resource"] != "device.message" || e["seq"] != float64(i+2) || fmt.Sprint(body["content"]) != fmt.Sprintf("map[i:%d]", i) {
			t.Errorf("event %d: %v", i+1, e)
		}
	}
}

func TestEventsTenantIsolation(t *testing.T) {
	s, _ := eventsFixture(t)
	st, out := call(s, "tok2", "GET", "/v5/iot/p2/events", "")
	if st != 200 {
		t.Fatalf("read: %d %v", st, out)
	}
	evs := out["events"].([]any)
	if len(evs) != 1 {
		t.Fatalf("p2 sees %d events, want its 1", len(evs))
	}
	if h := evs[0].(map[string]any)["notify_data"].(map[string]any)["header"].(map[string]any); h["device_id"] != "mp2_n" {
		t.Errorf("p2 sees %v", h)
	}
	if st, _ := call(s, "tok2", "GET", "/v5/iot/p1/events", ""); st != 403 {
		t.Errorf("p2's token reads p1's events: %d", st)
	}
}

func TestEventsBadRequests(t *testing.T) {
	s, reg := eventsFixture(t)
	ctx := context.Background()
	// Trim p1's first three events through a consumer's acknowledgement.
	if st, out := call(s, "tok1", "PUT", "/v5/iot/p1/event-consumers/app", ""); st != 200 || out["cursor"] != "0" {
		t.Fatalf("add consumer: %d %v", st, out)
	}
	page, err := reg.Events(ctx, "p1", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	third := fmt.Sprint(page.Events[2].Position)
	if st, out := call(s, "tok1", "POST", "/v5/iot/p1/event-consumers/app/ack", `{"cursor":"`+third+`"}`); st != 200 || out["cursor"] != third {
		t.Fatalf("ack: %d %v", st, out)
	}
	if _, err := reg.SweepEvents(ctx); err != nil {
		t.Fatal(err)
	}
	// The consumer reads on from its acknowledged cursor.
	st, out := call(s, "tok1", "GET", "/v5/iot/p1/events?consumer=app", "")
	if evs := out["events"].([]any); st != 200 || len(evs) != 3 || evs[0].(map[string]any)["seq"] != float64(4) {
		t.Fatalf("consumer read: %d %v", st, out)
	}
	for _, tc := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"GET", "/events?cursor=abc", "", 400, codeInvalidInput},
		{"GET", "/events?cursor=-1", "", 400, codeInvalidInput},
		{"GET", "/events?cursor=999999", "", 400, codeInvalidInput}, // ahead of the stream
		{"GET", "/events?cursor=1", "", 400, codeEventsTrimmed},
		{"GET", "/events?limit=0", "", 400, codeLimitRange},
		{"GET", "/events?limit=1001", "", 400, codeLimitRange},
		{"GET", "/events?limit=x", "", 400, codeLimitRange},
		{"GET", "/events?consumer=nobody", "", 404, codeConsumerNotFound},
		{"POST", "/event-consumers/nobody/ack", `{"cursor":"1"}`, 404, codeConsumerNotFound},
		{"POST", "/event-consumers/app/ack", `{}`, 400, codeInvalidInput},
		{"POST", "/event-consumers/app/ack", `{"cursor":"999999"}`, 400, codeInvalidInput},
		{"PUT", "/event-consumers/bad%20name", "", 400, codeInvalidInput},
	} {
		st, out := call(s, "tok1", tc.method, "/v5/iot/p1"+tc.path, tc.body)
		if st != tc.status || out["error_code"] != tc.code || out["error_msg"] == "" {
			t.Errorf("%s %s: got %d %v, want %d %s", tc.method, tc.path, st, out, tc.status, tc.code)
		}
	}
	// Another project's consumer of the same name is another consumer.
	if st, _ := call(s, "tok2", "GET", "/v5/iot/p2/event-consumers/app", ""); st != 404 {
		t.Errorf("p2 sees p1's consumer: %d", st)
	}
	if st, _ := call(s, "tok1", "DELETE", "/v5/iot/p1/event-consumers/app", ""); st != 204 {
		t.Errorf("delete consumer: %d", st)
	}
}
