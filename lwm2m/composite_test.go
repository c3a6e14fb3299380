package lwm2m_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/iotgate/iotgate/registry"
)

// resultOf decodes a command's result.
func resultOf(t *testing.T, c *registry.AsyncCommand) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(c.Result, &m); err != nil {
		t.Fatalf("result %s: %v", c.Result, err)
	}
	return m
}

// valuesOf maps a result's values by path.
func valuesOf(t *testing.T, res map[string]any) map[string]any {
	t.Helper()
	out := map[string]any{}
	vals, _ := res["values"].([]any)
	for _, v := range vals {
		m := v.(map[string]any)
		out[m["path"].(string)] = m["value"]
	}
	return out
}

// TestLwM2MCompositeOperations: READ, OBSERVE, CANCEL_OBSERVE and
// WRITE_COMPOSITE through asynchronous commands, in the SenML format the
// client declared (JSON, CBOR) or, declaring none, SenML CBOR.
func TestLwM2MCompositeOperations(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		declared []uint16
		want     float64 // the content format of the answers
	}{
		{"SenML JSON", []uint16{format.FormatSenMLJSON}, 110},
		{"SenML CBOR", []uint16{format.FormatTLV, format.FormatSenMLCBOR}, 112},
		{"none declared", nil, 112},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := "composite-" + strings.ReplaceAll(tc.name, " ", "-")
			d := f.device(node, false)
			c := f.client(lwm2mclient.Config{Endpoint: node, Formats: tc.declared})
			if err := c.Register(ctx); err != nil {
				t.Fatal(err)
			}
			read := f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "READ_COMPOSITE", `{"paths":["/3/0/0","/3/0/9","/1/0"]}`, true), registry.AsyncSuccessful)
			res := resultOf(t, read)
			vals := valuesOf(t, res)
			if res["code"] != "2.05" || res["content_format"] != tc.want || vals["/3/0/0"] != "iotgate" || vals["/3/0/9"] != 100.0 || vals["/1/0/1"] != 0.0 || len(vals) != 5 {
				t.Fatalf("READ_COMPOSITE: %s", read.Result)
			}

			f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "WRITE_COMPOSITE",
				`{"values":[{"path":"/1/0/1","value":600},{"path":"/3/0/14","value":"+08:00","kind":"string"}]}`, true), registry.AsyncSuccessful)
			if v, _ := c.Value("/1/0/1"); v != format.IntegerValue(600) {
				t.Fatalf("/1/0/1 after WRITE_COMPOSITE: %v", v)
			}
			if v, _ := c.Value("/3/0/14"); v != format.StringValue("+08:00") {
				t.Fatalf("/3/0/14 after WRITE_COMPOSITE: %v", v)
			}

			obs := f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "OBSERVE_COMPOSITE", `{"paths":["/3/0/9","/1/0/1"]}`, true), registry.AsyncSuccessful)
			if vals := valuesOf(t, resultOf(t, obs)); vals["/1/0/1"] != 600.0 || vals["/3/0/9"] != 100.0 {
				t.Fatalf("OBSERVE_COMPOSITE: %s", obs.Result)
			}
			if !c.ObservedComposite("/3/0/9", "/1/0/1") {
				t.Fatal("the client holds no composite observation")
			}
			if err := c.Set("/3/0/9", format.IntegerValue(42)); err != nil {
				t.Fatal(err)
			}
			var note registry.Message
			eventually(t, "the composite notification", func() bool {
				for _, m := range f.kept(d.DeviceID) {
					if m.Topic == "/3/0/9,/1/0/1" {
						note = m
						return true
					}
				}
				return false
			})
			if !strings.Contains(string(note.Payload), `"path":"/3/0/9","kind":"Integer","value":42`) || !strings.Contains(string(note.Payload), `"/1/0/1"`) {
				t.Fatalf("notification %s", note.Payload)
			}

			// Cancelled by its set of paths, in any order.
			f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "CANCEL_OBSERVE_COMPOSITE", `{"paths":["/1/0/1","/3/0/9"]}`, true), registry.AsyncSuccessful)
			if c.ObservedComposite("/3/0/9", "/1/0/1") {
				t.Fatal("the client still holds the composite observation")
			}
			again := f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "CANCEL_OBSERVE_COMPOSITE", `{"paths":["/1/0/1","/3/0/9"]}`, true), registry.AsyncFailed)
			if !strings.Contains(string(again.Result), "not observed") {
				t.Fatalf("second cancel: %s", again.Result)
			}
		})
	}
}

// TestLwM2MCompositeRefusals: a client that cannot take composite
// operations fails the command with the reason, without a request; the
// client's own refusals are the command's result.
func TestLwM2MCompositeRefusals(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	old := f.device("lwm2m10", false)
	c10 := f.client(lwm2mclient.Config{Endpoint: "lwm2m10", Version: "1.0"})
	if err := c10.Register(ctx); err != nil {
		t.Fatal(err)
	}
	res := f.waitCommand(old.DeviceID, f.command(old.DeviceID, "LwM2M", "READ_COMPOSITE", `{"paths":["/3/0/0"]}`, true), registry.AsyncFailed)
	if !strings.Contains(string(res.Result), "LwM2M 1.0") {
		t.Fatalf("1.0 client: %s", res.Result)
	}
	tlv := f.device("tlv-only", false)
	ct := f.client(lwm2mclient.Config{Endpoint: "tlv-only", Formats: []uint16{format.FormatTLV}})
	if err := ct.Register(ctx); err != nil {
		t.Fatal(err)
	}
	res = f.waitCommand(tlv.DeviceID, f.command(tlv.DeviceID, "LwM2M", "OBSERVE_COMPOSITE", `{"paths":["/3/0/0"]}`, true), registry.AsyncFailed)
	if !strings.Contains(string(res.Result), "11542") || ct.ObservedComposite("/3/0/0") {
		t.Fatalf("TLV-only client: %s", res.Result)
	}

	d := f.device("picky", false)
	c := f.client(lwm2mclient.Config{Endpoint: "picky", Formats: []uint16{format.FormatSenMLJSON}})
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	// Asked for CBOR, which it does not speak: its 4.15 is the result.
	res = f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "READ_COMPOSITE", `{"paths":["/3/0/0"],"content_format":112}`, true), registry.AsyncFailed)
	if r := resultOf(t, res); r["code"] != "4.15" {
		t.Fatalf("CBOR to a JSON client: %s", res.Result)
	}
	// A write to an instance it lacks changes nothing.
	res = f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "WRITE_COMPOSITE", `{"values":[{"path":"/1/0/1","value":5},{"path":"/3/7/1","value":"x"}]}`, true), registry.AsyncFailed)
	if r := resultOf(t, res); r["code"] != "4.04" {
		t.Fatalf("write to a missing instance: %s", res.Result)
	}
	if v, _ := c.Value("/1/0/1"); v != format.IntegerValue(0) {
		t.Fatalf("/1/0/1 after a refused WRITE_COMPOSITE: %v", v)
	}
	// An observation the client refuses is not kept.
	res = f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "OBSERVE_COMPOSITE", `{"paths":["/3303/0"]}`, true), registry.AsyncFailed)
	if r := resultOf(t, res); r["code"] != "4.04" {
		t.Fatalf("observe of nothing: %s", res.Result)
	}
	res = f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "CANCEL_OBSERVE_COMPOSITE", `{"paths":["/3303/0"]}`, true), registry.AsyncFailed)
	if !strings.Contains(string(res.Result), "not observed") {
		t.Fatalf("cancel of a refused observation: %s", res.Result)
	}
}
