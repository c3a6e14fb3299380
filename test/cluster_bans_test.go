package test

import (
	"net/url"
	"testing"
	"time"
)

// MQTT CONNACK return codes the ban tests expect.
const (
	connackAccepted     = 0x00
	connackBadPassword  = 0x04 // a credential was checked and failed
	connackUnauthorized = 0x05 // banned: nothing was checked
)

// connackWithin connects d to g until the CONNACK is want, for up to
// limit, and returns how long that took.
func connackWithin(t *testing.T, g *Gate, d *mqttDevice, want byte, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		code := mqttConnack(t, "127.0.0.1", g.MQTT, floodConnect(d.id, d.secret))
		if code == want {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("CONNACK 0x%02x %v after the change, want 0x%02x; logs:\n%s", code, limit, want, g.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listedBan is the ban of value in g's ban list, nil if none.
func listedBan(g *Gate, value string) map[string]any {
	page := g.MustDo(200, "GET", g.P("/banned?limit=50"), nil)
	for _, b := range page["banned"].([]any) {
		if b := b.(map[string]any); b["value"] == value {
			return b
		}
	}
	return nil
}

// A manual ban of a device through node 1's REST API is enforced by node
// 2 within a second, listed by node 2, survives node 2's restart, and
// lifting it through node 2 lets the device connect to node 1 again; a
// ban with a duration lifts on every node.
func TestClusterManualBanEveryNode(t *testing.T) {
	gates, _ := startCluster(t, 2)
	g1, g2 := gates[0], gates[1]
	d := createMQTTDevice(t, g1, "bans", "m1", false)
	if code := mqttConnack(t, "127.0.0.1", g2.MQTT, floodConnect(d.id, d.secret)); code != connackAccepted {
		t.Fatalf("node 2 before the ban: CONNACK 0x%02x", code)
	}

	g1.MustDo(201, "POST", g1.P("/banned"), map[string]any{"type": "identity", "value": d.id, "reason": "stolen credentials"})
	took := connackWithin(t, g2, d, connackUnauthorized, time.Second)
	t.Logf("node 2 refused the device %v after node 1 banned it", took)
	b := listedBan(g2, d.id)
	if b == nil || b["source"] != "manual" || b["reason"] != "stolen credentials" {
		t.Fatalf("node 2 lists %v, want the manual ban", b)
	}

	// A node that restarts enforces the cluster's bans from the start.
	g2.Kill()
	g2.Restart()
	if code := mqttConnack(t, "127.0.0.1", g2.MQTT, floodConnect(d.id, d.secret)); code != connackUnauthorized {
		t.Fatalf("node 2 after its restart: CONNACK 0x%02x, want 0x%02x (banned)", code, connackUnauthorized)
	}

	g2.MustDo(204, "DELETE", g2.P("/banned?type=identity&value="+url.QueryEscape(d.id)), nil)
	connackWithin(t, g1, d, connackAccepted, time.Second)
	if b := listedBan(g1, d.id); b != nil {
		t.Fatalf("node 1 still lists the ban lifted through node 2: %v", b)
	}

	// A ban with a duration expires on every node.
	g2.MustDo(201, "POST", g2.P("/banned"), map[string]any{"type": "identity", "value": d.id, "duration": 2})
	connackWithin(t, g1, d, connackUnauthorized, time.Second)
	time.Sleep(2 * time.Second)
	for i, g := range gates {
		if code := mqttConnack(t, "127.0.0.1", g.MQTT, floodConnect(d.id, d.secret)); code != connackAccepted {
			t.Fatalf("node %d after the ban expired: CONNACK 0x%02x", i+1, code)
		}
		if b := listedBan(g, d.id); b != nil {
			t.Fatalf("node %d lists an expired ban: %v", i+1, b)
		}
	}
}

// Wrong-password CONNECTs past the threshold against node 1 ban the
// device there, and node 2 then refuses it too, right password and all.
func TestClusterAutomaticBanEveryNode(t *testing.T) {
	gates, _ := startCluster(t, 2)
	g1, g2 := gates[0], gates[1]
	d := createMQTTDevice(t, g1, "autoban", "a1", false)
	wrong := &mqttDevice{id: d.id, secret: "wrongSecret0001", g: g1}
	const threshold = 15 // limits.auth_failures.max, the default
	for i := range threshold {
		if code := mqttConnack(t, "127.0.0.1", g1.MQTT, floodConnect(wrong.id, wrong.secret)); code != connackBadPassword {
			t.Fatalf("wrong password %d: CONNACK 0x%02x, want 0x%02x", i+1, code, connackBadPassword)
		}
	}
	if code := mqttConnack(t, "127.0.0.1", g1.MQTT, floodConnect(d.id, d.secret)); code != connackUnauthorized {
		t.Fatalf("node 1 after %d failures: CONNACK 0x%02x, want banned", threshold, code)
	}
	took := connackWithin(t, g2, d, connackUnauthorized, time.Second)
	t.Logf("node 2 refused the device %v after node 1 banned it automatically", took)
	if b := listedBan(g2, d.id); b == nil || b["source"] != "auto" {
		t.Fatalf("node 2 lists %v, want the automatic ban", b)
	}
}
