package test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestCrashLoop: kill -9 at a random moment 2-5 s into a mixed load
// (creates, deletes, MQTT connects and QoS 1 uplinks), cycle after cycle.
// After every kill `iotgate check` finds the records, indexes and counters
// in agreement, and at the end every acknowledged create is there unless
// its acknowledged delete removed it. IOTGATE_CRASH_CYCLES sets the
// cycles (5 by default; issue 19's campaign runs 20).
func TestCrashLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash loop takes tens of seconds")
	}
	cycles := 5
	if v, err := strconv.Atoi(os.Getenv("IOTGATE_CRASH_CYCLES")); err == nil && v > 0 {
		cycles = v
	}
	g := StartGate(t, GateOptions{})
	g.CreateProduct("cl", "MQTT")
	const secret = "crashLoopSecret1"
	const senders = 4
	for i := range senders {
		g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": fmt.Sprint("up", i), "product_id": "cl",
			"auth_info": map[string]any{"secret": secret, "secure_access": false}})
	}
	var (
		created, deleted sync.Map // node id -> acknowledged
		tried            sync.Map // node id -> a delete was sent (its answer may have been lost)
		nCreated, nDel   atomic.Int64
		nUplinks         atomic.Int64
		connectErr       atomic.Value
	)
	client := &http.Client{Timeout: 5 * time.Second, Transport: g.checked(nil)}
	do := func(method, path, body string) int {
		req, _ := http.NewRequest(method, g.API+g.P(path), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Auth-Token", g.Token)
		resp, err := client.Do(req)
		if err != nil {
			return 0 // the server is gone
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 16))
	for c := range cycles {
		if c > 0 {
			g.Restart()
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		for w := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; !stop.Load(); i++ {
					node := fmt.Sprintf("c%dw%di%d", c, w, i)
					if do("POST", "/devices", fmt.Sprintf(`{"node_id":%q,"product_id":"cl"}`, node)) != 201 {
						continue
					}
					created.Store(node, true)
					nCreated.Add(1)
					if i%4 == 0 {
						tried.Store(node, true)
						if do("DELETE", "/devices/cl_"+node, "") == 204 {
							deleted.Store(node, true)
							nDel.Add(1)
						}
					}
				}
			}()
		}
		for s := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					cl := paho.NewClient(g.huaweiOptions(fmt.Sprint("cl_up", s), secret))
					if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
						connectErr.Store(fmt.Sprint(tok.Error()))
						time.Sleep(50 * time.Millisecond)
						continue
					}
					for i := 0; i < 50 && !stop.Load(); i++ {
						tok := cl.Publish(fmt.Sprintf("$oc/devices/cl_up%d/sys/messages/up", s), 1, false, fmt.Sprintf(`{"c":%d,"i":%d}`, c, i))
						if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
							nUplinks.Add(1)
						}
					}
					cl.Disconnect(0)
				}
			}()
		}
		time.Sleep(2*time.Second + time.Duration(rng.Int64N(int64(3*time.Second))))
		g.Kill()
		stop.Store(true)
		wg.Wait()
		out, err := exec.Command(binary(t), "-config", g.Config, "check").CombinedOutput()
		if err != nil {
			t.Fatalf("cycle %d: iotgate check after kill -9: %v\n%s", c, err, out)
		}
	}
	g.Restart()
	missing, kept := 0, 0
	created.Range(func(k, _ any) bool {
		_, gone := deleted.Load(k)
		_, maybe := tried.Load(k)
		st, _ := g.Do("GET", g.P("/devices/cl_"+k.(string)), nil)
		switch {
		case maybe && !gone && (st == 200 || st == 404):
			// A delete whose answer the kill cut off: either outcome.
		case gone && st != 404:
			kept++
			t.Errorf("device %s: deleted (acknowledged) but GET answers %d", k, st)
		case !gone && st != 200:
			missing++
			t.Errorf("device %s: created (acknowledged) but GET answers %d", k, st)
		}
		return true
	})
	t.Logf("%d cycles: %d creates and %d deletes acknowledged, %d uplinks acknowledged; lost: %d creates, %d deletes",
		cycles, nCreated.Load(), nDel.Load(), nUplinks.Load(), missing, kept)
	if nCreated.Load() == 0 || nUplinks.Load() == 0 {
		t.Fatalf("the load did nothing: %d creates, %d uplinks (last connect error: %v); logs:\n%s", nCreated.Load(), nUplinks.Load(), connectErr.Load(), lastLines(g.Logs(), 30))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
