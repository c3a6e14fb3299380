package test

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// On a cluster one node drives an action; when it is killed, another
// takes the action over (once the lease expires) and every acknowledged
// uplink still arrives, in order, duplicates only by request_id.
func TestClusterForwardingFailover(t *testing.T) {
	c := newCluster(t, 2, clusterOptions{limits: "mqtt:\n  uplink_rate: 1000000\n  uplink_burst: 1000000\n",
		extra: "forwarding:\n  poll: 10ms\n  reload: 200ms\n  retry_max: 1s\n"})
	g1 := c.gates[0]
	g1.CreateProduct("fc", "MQTT")
	rcv := newReceiver(t, false)
	g1.forwardTo(g1.Token, g1.Project, "device.message", "report", "", rcv.url(), nil)
	// Which node runs the action?
	var holder, other *Gate
	deadline := time.Now().Add(10 * time.Second)
	for holder == nil {
		for i, g := range c.gates {
			if strings.Contains(g.Logs(), "forwarding: running action") {
				holder, other = g, c.gates[1-i]
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no node runs the action")
		}
		time.Sleep(50 * time.Millisecond)
	}

	const devices, perDevice, window, secret = 2, 1500, 8, "forwardCluster1"
	ids := make([]string, devices)
	clients := make([]paho.Client, devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("fc_n%d", i)
		g1.MustDo(201, "POST", g1.P("/devices"), map[string]any{"node_id": fmt.Sprintf("n%d", i), "product_id": "fc",
			"auth_info": map[string]any{"secret": secret, "secure_access": false}})
		clients[i] = other.huaweiConnect(ids[i], secret) // on the node that survives
	}
	acked := make([]map[int]bool, devices)
	for d := range acked {
		acked[d] = map[int]bool{}
	}
	var total atomic.Int64
	var stop atomic.Bool
	from, half, to := make([]int, devices), make([]int, devices), make([]int, devices)
	for d := range to {
		half[d], to[d] = perDevice/2, perDevice
	}
	next := sendUplinks(clients, ids, from, half, window, acked, &total, &stop)
	holder.Kill()
	killed := time.Now()
	sendUplinks(clients, ids, next, to, window, acked, &total, &stop)
	pushes := rcv.waitFor("every acknowledged uplink", 2*time.Minute, other, allArrived(ids, acked))
	dups := checkDelivery(t, pushes, ids, acked, nil)
	if !strings.Contains(other.Logs(), "forwarding: running action") {
		t.Error("the surviving node never ran the action")
	}
	t.Logf("%d uplinks acknowledged, all pushed %v after the driving node's kill -9, %d duplicates", total.Load(),
		time.Since(killed).Round(time.Millisecond), dups)
}

// An uplink committed on one node reaches the receiver of an action that
// another node drives at once: the committing node hints the other nodes
// over NATS, and the driving node's worker reads without waiting for its
// poll (5 s here, so that a missing hint fails the test).
func TestClusterForwardingWakesAcrossNodes(t *testing.T) {
	c := newCluster(t, 2, clusterOptions{extra: "forwarding:\n  poll: 5s\n  reload: 200ms\n"})
	g1 := c.gates[0]
	g1.CreateProduct("fw", "MQTT")
	rcv := newReceiver(t, false)
	g1.forwardTo(g1.Token, g1.Project, "device.message", "report", "", rcv.url(), nil)
	var other *Gate
	deadline := time.Now().Add(10 * time.Second)
	for other == nil {
		for i, g := range c.gates {
			if strings.Contains(g.Logs(), "forwarding: running action") {
				other = c.gates[1-i]
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no node runs the action")
		}
		time.Sleep(50 * time.Millisecond)
	}
	const secret = "forwardWake1"
	g1.MustDo(201, "POST", g1.P("/devices"), map[string]any{"node_id": "w", "product_id": "fw",
		"auth_info": map[string]any{"secret": secret, "secure_access": false}})
	cl := other.huaweiConnect("fw_w", secret) // uplinks commit on the node not driving the action
	// The first push also waits for the worker to have read past the
	// device's creation; the ones after it measure the wake alone.
	const uplinks = 10
	var lat []time.Duration
	for i := range uplinks {
		time.Sleep(300 * time.Millisecond) // the worker has caught up and waits
		sent := time.Now()
		tok := cl.Publish("$oc/devices/fw_w/sys/messages/up", 1, false, fmt.Sprintf(`{"i":%d}`, i))
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("uplink %d not acknowledged: %v", i, tok.Error())
		}
		p := rcv.waitFor(fmt.Sprint("uplink ", i), 20*time.Second, other, func(p []push) bool { return len(p) > i })
		lat = append(lat, p[i].at.Sub(sent))
	}
	slices.Sort(lat)
	// The poll is 5 s: a push without the wake takes 2.5 s on average.
	if worst := lat[len(lat)-2]; worst > time.Second {
		t.Errorf("pushes across nodes took %v (sorted): the driving node waited for its poll", lat)
	}
	t.Logf("uplink on one node to push by the other: median %v, max %v", lat[len(lat)/2], lat[len(lat)-1])
}
