package test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/basic"
	iotda "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5/model"

	"github.com/iotgate/iotgate/registry/bus/natsbus/natstest"
	"github.com/iotgate/iotgate/registry/kv/pgkv/pgtest"
)

// cluster is what a cluster test runs on, on loopback ports of its own:
// PostgreSQL (one database for the test), a 3-server NATS cluster and the
// iotgate nodes node-1..node-n, each on another NATS server first, all
// with one master key. Everything stops with the test.
type cluster struct {
	gates []*Gate
	nats  []*natstest.Server
	pg    *pgtest.Server
}

// clusterOptions vary the nodes' configuration.
type clusterOptions struct {
	limits  string // lines of each node's limits block (GateOptions.Limits)
	extra   string // more lines of each node's configuration
	forward bool   // each node advertises a DTLS forward listener (cluster.advertise.coap_forward)
}

// startCluster starts a cluster of n nodes and returns them and the NATS
// servers.
func startCluster(t *testing.T, n int) ([]*Gate, []*natstest.Server) {
	t.Helper()
	c := newCluster(t, n, clusterOptions{})
	return c.gates, c.nats
}

func newCluster(t *testing.T, n int, o clusterOptions) *cluster {
	t.Helper()
	c := &cluster{pg: pgtest.Start(t)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url, err := c.pg.Database(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	c.nats = natstest.StartCluster(t, 3)
	key := strings.Repeat("3c", 32)
	for i := range n {
		// Each node lists its own NATS server first, as an operator spreads
		// nodes over the servers; the others are its failover.
		urls := []string{c.nats[i%len(c.nats)].URL()}
		for j, s := range c.nats {
			if j != i%len(c.nats) {
				urls = append(urls, s.URL())
			}
		}
		advertise := ""
		if o.forward {
			advertise = fmt.Sprintf("  advertise:\n    coap_forward: %q\n", freePorts(t, "udp")[0])
		}
		extra := postgresConfig(url) + fmt.Sprintf("cluster:\n  node_id: node-%d\n  nats_url: %q\n%smaster_key: %q\n",
			i+1, strings.Join(urls, ","), advertise, key) + o.extra
		c.gates = append(c.gates, StartGate(t, GateOptions{Extra: extra, LogLevel: "info", Limits: o.limits}))
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, g := range c.gates {
				t.Logf("node %d:\n%s", i+1, tail(g.Logs(), 20000))
			}
		}
	})
	return c
}

// The acceptance: an unmodified Huawei Go SDK creates a device on
// node 1, an MQTT device (mosquitto_sub) connects to node 2, and a
// synchronous command sent through node 3 reaches it and returns its
// answer; every node lists the three nodes.
func TestClusterSDKDeviceCommandAcrossNodes(t *testing.T) {
	requireTool(t, "mosquitto_sub")
	gates, _ := startCluster(t, 3)
	g1, g2, g3 := gates[0], gates[1], gates[2]

	client := iotda.NewIoTDAClient(iotda.IoTDAClientBuilder().WithEndpoint(g1.API).WithHttpConfig(g1.sdkHTTPConfig(nil)).
		WithCredential(basic.NewCredentialsBuilder().WithAk(g1.AK).WithSk(g1.SK).WithProjectId(g1.Project).Build()).Build())
	product := "clustered"
	if _, err := client.CreateProduct(&model.CreateProductRequest{Body: &model.AddProduct{
		ProductId: &product, Name: "Clustered meter", DeviceType: "Meter", ProtocolType: "MQTT", DataFormat: "json",
		ServiceCapabilities: []model.ServiceCapability{{ServiceId: "Power", ServiceType: "Power"}},
	}}); err != nil {
		t.Fatalf("CreateProduct on node 1: %v", err)
	}
	secret, plain := "interopSecret01", false // mosquitto connects without TLS
	cr, err := client.AddDevice(&model.AddDeviceRequest{Body: &model.AddDevice{
		NodeId: "m1", ProductId: product, AuthInfo: &model.AuthInfo{Secret: &secret, SecureAccess: &plain}}})
	if err != nil {
		t.Fatalf("AddDevice on node 1: %v", err)
	}
	// The device connects to node 2; the command goes through node 3.
	dev := &mqttDevice{id: *cr.DeviceId, secret: secret, g: g2}
	commandRoundTrip(t, g3, dev)

	// So do a properties get (through node 3) and desired values written
	// through node 1 while the device is online on node 2.
	c, msgs := huaweiPaho(t, g2, dev)
	waitOnline(t, g3, dev.id)
	others := answerProperties(t, c, msgs, dev.id, map[string]any{"power": 7.0})
	got, err := sdkClient(g3).ListProperties(&model.ListPropertiesRequest{DeviceId: dev.id, ServiceId: "Power"})
	if b, _ := json.Marshal(got.Response); err != nil || !strings.Contains(string(b), `"power":7`) {
		t.Fatalf("ListProperties through node 3: %s %v", b, err)
	}
	var desired any = map[string]any{"power": 9}
	if _, err := client.UpdateDeviceShadowDesiredData(&model.UpdateDeviceShadowDesiredDataRequest{DeviceId: dev.id,
		Body: &model.UpdateDesireds{Shadow: &[]model.UpdateDesired{{ServiceId: "Power", Desired: &desired}}}}); err != nil {
		t.Fatalf("UpdateDeviceShadowDesiredData on node 1: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// answerProperties applied the set to its values: a get shows it.
		got, err := sdkClient(g3).ListProperties(&model.ListPropertiesRequest{DeviceId: dev.id, ServiceId: "Power"})
		if b, _ := json.Marshal(got.Response); err == nil && strings.Contains(string(b), `"power":9`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("desired values written on node 1 did not reach the device on node 2; logs:\n%s", g2.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case m := <-others:
		t.Fatalf("unexpected downlink %s %s", m.Topic(), m.Payload())
	default:
	}

	for i, g := range gates {
		nodes := g.MustDo(200, "GET", g.P("/cluster/nodes"), nil)["nodes"].([]any)
		if len(nodes) != 3 {
			t.Fatalf("node %d lists %d nodes: %v", i+1, len(nodes), nodes)
		}
	}
}

// Expiry with three nodes: devices created through all three with a
// short timeout, never connected, are each deleted exactly once (one
// delete event each, whichever node holds the sweep's lease), and no
// device with a long timeout is.
func TestClusterExpiryDeletesOnce(t *testing.T) {
	gates, _ := startCluster(t, 3)
	g := gates[0]
	g.CreateProduct("exp", "MQTT")
	const short, long = 1000, 30
	for i := range short + long {
		timeout := 5
		if i >= short {
			timeout = 3600
		}
		gi := gates[i%len(gates)]
		gi.MustDo(201, "POST", gi.P("/devices"), map[string]any{"node_id": fmt.Sprint("e", i), "product_id": "exp",
			"auth_info": map[string]any{"timeout": timeout}})
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		page := g.MustDo(200, "GET", g.P("/devices?product_id=exp&limit=1"), nil)
		if n := page["page"].(map[string]any)["count"].(float64); n == long {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%v devices left 30 s after their 5 s timeout, want %d", n, long)
		}
		time.Sleep(500 * time.Millisecond)
	}
	deletes := map[string]int{}
	for _, g := range gates { // every node reads the one stream
		evs, _ := g.readEvents("")
		clear(deletes)
		for _, e := range evs {
			if e.Resource == "device" && e.Event == "delete" {
				deletes[e.NotifyData.Header.DeviceID]++
			}
		}
		if len(deletes) != short {
			t.Fatalf("%d devices have delete events, want %d", len(deletes), short)
		}
		for id, n := range deletes {
			if n != 1 {
				t.Fatalf("device %s deleted %d times", id, n)
			}
		}
	}
}

// A freeze through one node drops the device's session on the node that
// holds it and refuses its reconnect there at once.
func TestClusterFreezeReachesTheSessionsNode(t *testing.T) {
	gates, _ := startCluster(t, 2)
	g1, g2 := gates[0], gates[1]
	d := createMQTTDevice(t, g1, "frz", "n1", false)
	lost := make(chan struct{})
	opts := g2.huaweiOptions(d.id, d.secret).SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to node 2: %v", tok.Error())
	}
	defer c.Disconnect(0)
	waitOnline(t, g1, d.id)

	if st, body := g1.Do("POST", g1.P("/devices/"+d.id+"/freeze"), nil); st != 204 {
		t.Fatalf("freeze through node 1: %d %v", st, body)
	}
	select {
	case <-lost:
	case <-time.After(2 * time.Second):
		t.Fatalf("node 2 kept the session of a device frozen through node 1; node 2:\n%s", g2.Logs())
	}
	again := paho.NewClient(g2.huaweiOptions(d.id, d.secret))
	if tok := again.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		again.Disconnect(0)
		t.Fatal("node 2 accepted the frozen device")
	}
}

// Creates spread over three nodes at once: their batches collide in
// PostgreSQL (the event position every create advances, the index pages
// they insert into) and the nodes retry apart until each commits. A
// create may still be refused after its retries, with a 503 that says
// nothing was written, and then nothing was; every node counts exactly
// the acknowledged devices.
func TestClusterConcurrentCreates(t *testing.T) {
	gates, _ := startCluster(t, 3)
	gates[0].CreateProduct("burst", "MQTT")
	const workers, each = 48, 25
	var mu sync.Mutex
	var refused []string
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := gates[w%len(gates)]
			for i := range each {
				node := fmt.Sprintf("b%d-%d", w, i)
				st, body := g.Do("POST", g.P("/devices"), map[string]any{"node_id": node, "product_id": "burst"})
				switch {
				case st == 201:
				case st == 503 && strings.Contains(fmt.Sprint(body["error_msg"]), "Nothing was written"):
					mu.Lock()
					refused = append(refused, "burst_"+node)
					mu.Unlock()
				default:
					t.Errorf("create through node %d: %d %v", w%len(gates)+1, st, body)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d of %d creates refused after their conflict retries", len(refused), workers*each)
	if len(refused) > workers*each/100 {
		t.Errorf("%d of %d creates refused, want at most 1%%", len(refused), workers*each)
	}
	for _, id := range refused {
		if st, _ := gates[1].Do("GET", gates[1].P("/devices/"+id), nil); st != 404 {
			t.Errorf("refused create of %s: the device reads %d, want 404", id, st)
		}
	}
	for i, g := range gates {
		page := g.MustDo(200, "GET", g.P("/devices?product_id=burst&limit=1"), nil)
		if n := int(page["page"].(map[string]any)["count"].(float64)); n != workers*each-len(refused) {
			t.Fatalf("node %d counts %d devices, want the %d acknowledged", i+1, n, workers*each-len(refused))
		}
	}
}
