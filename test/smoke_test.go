package test

import "testing"

func TestSmokeCreateDevice(t *testing.T) {
	g := StartGate(t, GateOptions{})
	g.CreateProduct("p1", "MQTT")
	d := g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "n1", "product_id": "p1"})
	if d["device_id"] != "p1_n1" || d["status"] != "INACTIVE" {
		t.Fatalf("unexpected device: %v", d)
	}
}
