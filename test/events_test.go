package test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// streamEvent is the part of an event the checks below read.
type streamEvent struct {
	Cursor     string `json:"cursor"`
	Seq        uint64 `json:"seq"`
	Resource   string `json:"resource"`
	Event      string `json:"event"`
	NotifyData struct {
		Header struct {
			DeviceID string `json:"device_id"`
		} `json:"header"`
		Body json.RawMessage `json:"body"`
	} `json:"notify_data"`
}

// readEvents reads the project's events after cursor to the end of the
// stream and returns them with the cursor to read on from.
func (g *Gate) readEvents(cursor string) ([]streamEvent, string) {
	g.t.Helper()
	var out []streamEvent
	for {
		q := url.Values{"limit": {"1000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		resp := g.MustDo(200, "GET", g.P("/events?"+q.Encode()), nil)
		raw, _ := json.Marshal(resp["events"])
		var page []streamEvent
		if err := json.Unmarshal(raw, &page); err != nil {
			g.t.Fatal(err)
		}
		if len(page) == 0 {
			return out, cursor
		}
		out = append(out, page...)
		cursor = resp["next_cursor"].(string)
	}
}

// huaweiOptions are a Paho client's options for a SECRET device in
// Huawei's CONNECT format (sign_type 0), with no automatic reconnection:
// a publish in flight when the server dies fails instead of being sent
// again.
func (g *Gate) huaweiOptions(deviceID, secret string) *paho.ClientOptions {
	ts := time.Now().UTC().Format("2006010215")
	m := hmac.New(sha256.New, []byte(ts))
	m.Write([]byte(secret))
	return paho.NewClientOptions().AddBroker("tcp://" + g.MQTT).SetClientID(deviceID + "_0_0_" + ts).
		SetUsername(deviceID).SetPassword(hex.EncodeToString(m.Sum(nil))).SetProtocolVersion(4).
		SetKeepAlive(60 * time.Second).SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).
		SetConnectTimeout(5 * time.Second).SetWriteTimeout(5 * time.Second).SetOrderMatters(false)
}

// huaweiConnect connects a Paho client with huaweiOptions, or fails the
// test.
func (g *Gate) huaweiConnect(deviceID, secret string) paho.Client {
	g.t.Helper()
	c := paho.NewClient(g.huaweiOptions(deviceID, secret))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		g.t.Fatalf("connect %s: %v; logs:\n%s", deviceID, tok.Error(), g.Logs())
	}
	g.t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// Uplinks acknowledged (PUBACKed) before a kill -9 each have exactly one
// event after the restart; every device's events are numbered without gap
// or repeat, and its messages are in the order it sent them; a cursor
// read before the crash reads on after it.
func TestEventsSurviveKillDuringUplinkBurst(t *testing.T) {
	g := StartGate(t, GateOptions{})
	g.CreateProduct("evp", "MQTT")
	const devices, window, secret = 4, 8, "eventsSecret01"
	ids := make([]string, devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("evp_n%d", i)
		g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": fmt.Sprintf("n%d", i), "product_id": "evp",
			"auth_info": map[string]any{"secret": secret, "secure_access": false}})
	}
	clients := make([]paho.Client, devices)
	for i, id := range ids {
		clients[i] = g.huaweiConnect(id, secret)
	}

	// Each device sends {"i":0}, {"i":1}, ... with up to window PUBLISHes
	// in flight, and records which were acknowledged.
	acked := make([]map[int]bool, devices)
	var total atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for d := range devices {
		acked[d] = map[int]bool{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			type sent struct {
				i   int
				tok paho.Token
			}
			var inflight []sent
			settle := func(s sent) {
				if s.tok.WaitTimeout(15*time.Second) && s.tok.Error() == nil {
					acked[d][s.i] = true
					total.Add(1)
				}
			}
			for i := 0; !stop.Load() && i < 20000; i++ {
				tok := clients[d].Publish("$oc/devices/"+ids[d]+"/sys/messages/up", 1, false, fmt.Sprintf(`{"i":%d}`, i))
				inflight = append(inflight, sent{i, tok})
				if len(inflight) == window {
					settle(inflight[0])
					inflight = inflight[1:]
				}
			}
			for _, s := range inflight {
				settle(s)
			}
		}()
	}

	// Read part of the stream mid-burst, then crash.
	deadline := time.Now().Add(30 * time.Second)
	for total.Load() < 200 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	before, cursor := g.readEvents("")
	for total.Load() < 400 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	g.Kill()
	stop.Store(true)
	wg.Wait()
	if total.Load() < 200 {
		t.Fatalf("only %d uplinks acknowledged before the kill; logs:\n%s", total.Load(), g.Logs())
	}

	g.Restart()
	after, _ := g.readEvents(cursor)
	all, _ := g.readEvents("")
	if len(all) != len(before)+len(after) {
		t.Fatalf("read %d events before the crash and %d after its cursor, but %d in all", len(before), len(after), len(all))
	}
	for i := range before {
		if all[i].Cursor != before[i].Cursor || all[i].Seq != before[i].Seq {
			t.Fatalf("event %d changed across the restart: %+v then %+v", i, before[i], all[i])
		}
	}

	index := map[string]int{}
	for i, id := range ids {
		index[id] = i
	}
	lastSeq := make([]uint64, devices)
	lastMsg := make([]int, devices)
	seen := make([]map[int]bool, devices)
	for d := range devices {
		lastMsg[d] = -1
		seen[d] = map[int]bool{}
	}
	for _, e := range all {
		d, ok := index[e.NotifyData.Header.DeviceID]
		if !ok {
			t.Fatalf("event of an unknown device: %+v", e)
		}
		if e.Seq != lastSeq[d]+1 {
			t.Errorf("%s: seq %d after %d (%s %s)", ids[d], e.Seq, lastSeq[d], e.Resource, e.Event)
		}
		lastSeq[d] = e.Seq
		if e.Resource != "device.message" {
			continue
		}
		var body struct {
			Content struct{ I int } `json:"content"`
		}
		if err := json.Unmarshal(e.NotifyData.Body, &body); err != nil {
			t.Fatal(err)
		}
		i := body.Content.I
		if seen[d][i] {
			t.Errorf("%s: message %d has two events", ids[d], i)
		}
		seen[d][i] = true
		if i <= lastMsg[d] {
			t.Errorf("%s: message %d after %d: not in send order", ids[d], i, lastMsg[d])
		}
		lastMsg[d] = i
	}
	lost := 0
	for d := range devices {
		for i := range acked[d] {
			if !seen[d][i] {
				lost++
				if lost < 10 {
					t.Errorf("%s: acknowledged message %d has no event", ids[d], i)
				}
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d acknowledged messages have no event", lost)
	}
	t.Logf("%d acknowledged uplinks before kill -9, %d events in all (%d read before the crash)", total.Load(), len(all), len(before))
}
