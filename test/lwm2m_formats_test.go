package test

import (
	"context"
	"testing"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
)

// TestLwM2MDeclaredFormats: a client that declares SenML JSON only
// (</>;rt="oma.lwm2m";ct=110, as Wakaama's example client does) and
// refuses every other format but text and opaque for single values is
// read and written through the REST API with no format given: the server
// asks for and writes in what the client declared.
func TestLwM2MDeclaredFormats(t *testing.T) {
	g := startLwM2MGate(t)
	dev := lwm2mDevice(t, g, "senml-1", false, nil)
	c := goClient(t, g, lwm2mclient.Config{Endpoint: "senml-1", Lifetime: 60, Formats: []uint16{format.FormatSenMLJSON}})
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitDeviceStatus(t, g, dev, "ONLINE")
	run := func(name string, paras map[string]any, want string) map[string]any {
		t.Helper()
		id := asyncCommand(t, g, dev, map[string]any{"service_id": "LwM2M", "command_name": name, "paras": paras, "send_strategy": "immediately"})
		return waitCommand(t, g, dev, id, want)["result"].(map[string]any)
	}

	// An instance: asked for in SenML JSON.
	res := run("READ", map[string]any{"path": "/3/0"}, "SUCCESSFUL")
	if res["content_format"] != float64(format.FormatSenMLJSON) || !hasValue(res, "/3/0/0", "iotgate") {
		t.Fatalf("READ /3/0: %v", res)
	}
	if a, _ := c.Accept("/3/0"); a != int(format.FormatSenMLJSON) {
		t.Fatalf("READ /3/0 carried Accept %d, want 110", a)
	}
	// A single resource: text/plain.
	res = run("READ", map[string]any{"path": "/3/0/0"}, "SUCCESSFUL")
	if res["content_format"] != float64(format.FormatText) || !hasValue(res, "/3/0/0", "iotgate") {
		t.Fatalf("READ /3/0/0: %v", res)
	}
	// Several values: written in SenML JSON (TLV would get 4.06).
	run("WRITE", map[string]any{"path": "/1/0", "mode": "update", "values": []any{
		map[string]any{"path": "/1/0/1", "value": 120}, map[string]any{"path": "/1/0/7", "value": "UQ"}}}, "SUCCESSFUL")
	if v, _ := c.Value("/1/0/1"); v.Int() != 120 {
		t.Fatalf("/1/0/1 = %v after the WRITE", v)
	}
	if v, _ := c.Value("/1/0/7"); v.Str() != "UQ" {
		t.Fatalf("/1/0/7 = %v after the WRITE", v)
	}
	// An Observe of an instance asks for SenML JSON too.
	res = run("OBSERVE", map[string]any{"path": "/1/0"}, "SUCCESSFUL")
	if res["content_format"] != float64(format.FormatSenMLJSON) || !hasValue(res, "/1/0/7", "UQ") {
		t.Fatalf("OBSERVE /1/0: %v", res)
	}
	// A format the application names is sent as named, and the client's
	// refusal comes back as the command's result.
	if res := run("READ", map[string]any{"path": "/3/0", "accept": 11542}, "FAILED"); res["code"] != "4.06" {
		t.Fatalf("READ /3/0 as TLV: %v", res)
	}
	if res := run("WRITE", map[string]any{"path": "/1/0/1", "value": 60, "content_format": 11542}, "FAILED"); res["code"] != "4.06" {
		t.Fatalf("WRITE as TLV: %v", res)
	}
}

// hasValue reports whether a command result holds value at path.
func hasValue(res map[string]any, path string, value any) bool {
	vals, _ := res["values"].([]any)
	for _, v := range vals {
		if m, ok := v.(map[string]any); ok && m["path"] == path && m["value"] == value {
			return true
		}
	}
	return false
}
