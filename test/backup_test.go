package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// listAllDevices pages through the project's devices of product and
// returns each device's view (as JSON) by id.
func listAllDevices(t *testing.T, g *Gate, product string) map[string]string {
	t.Helper()
	out := map[string]string{}
	marker := ""
	for {
		q := url.Values{"product_id": {product}, "limit": {"50"}}
		if marker != "" {
			q.Set("marker", marker)
		}
		page := g.MustDo(http.StatusOK, "GET", g.P("/devices?"+q.Encode()), nil)
		devs := page["devices"].([]any)
		for _, d := range devs {
			m := d.(map[string]any)
			b, _ := json.Marshal(m)
			out[m["device_id"].(string)] = string(b)
		}
		marker, _ = page["page"].(map[string]any)["marker"].(string)
		if len(devs) < 50 || marker == "" {
			return out
		}
	}
}

// restoreGate restores backup into a new data directory, with the
// original's master key, checks it, and starts a gate on it.
func restoreGate(t *testing.T, from *Gate, backup string) *Gate {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "restore.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir: %q\n", data)), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, "restore", "-config", cfg, "-i", backup); r.code != 0 {
		t.Fatalf("restore: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	key, err := os.ReadFile(filepath.Join(from.DataDir, "data", "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "master.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	// The restored store is whole: its records, indexes and counters agree.
	g := StartGate(t, GateOptions{DataDir: dir})
	g.Stop()
	if r := runCLI(t, "-config", g.Config, "check"); r.code != 0 || !strings.Contains(r.stdout, "the store is consistent") {
		t.Fatalf("check of the restored store: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	g.Restart()
	return g
}

// A backup taken through the running server while devices are being
// created restores to a consistent store holding every device created
// before it began and none that was never created; one taken at rest
// restores to exactly the devices served. A restore refuses a data
// directory that holds a store.
func TestBackupUnderLoadRestores(t *testing.T) {
	g := StartGate(t, GateOptions{})
	g.CreateProduct("bk", "MQTT")
	for i := range 100 {
		g.MustDo(http.StatusCreated, "POST", g.P("/devices"), map[string]any{"node_id": fmt.Sprint("pre", i), "product_id": "bk"})
	}

	// Load: four writers create devices until told to stop.
	var (
		stop      atomic.Bool
		wg        sync.WaitGroup
		mu        sync.Mutex
		acked     = map[string]bool{} // created, and the 201 received
		attempted = map[string]bool{}
		backingUp atomic.Bool
		ackBefore = map[string]bool{} // acked before the backup began
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				node := fmt.Sprintf("ld%d-%d", w, i)
				mu.Lock()
				attempted["bk_"+node] = true
				mu.Unlock()
				st, _ := g.Do("POST", g.P("/devices"), map[string]any{"node_id": node, "product_id": "bk"})
				if st == http.StatusCreated {
					mu.Lock()
					acked["bk_"+node] = true
					if !backingUp.Load() {
						ackBefore["bk_"+node] = true
					}
					mu.Unlock()
				}
			}
		}()
	}
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 50 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	backingUp.Store(true)
	underLoad := filepath.Join(t.TempDir(), "under-load.backup")
	r := runCLI(t, "backup", "-config", g.Config, "-o", underLoad)
	if r.code != 0 || !strings.Contains(r.stdout, "online") {
		t.Fatalf("backup under load: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	mu.Lock()
	createdDuring := len(acked) - len(ackBefore)
	mu.Unlock()
	stop.Store(true)
	wg.Wait()
	if createdDuring == 0 {
		t.Log("no device was created while the backup ran; the load did not overlap it")
	}

	// At rest: exactly the devices served.
	atRest := filepath.Join(t.TempDir(), "at-rest.backup")
	if r := runCLI(t, "backup", "-config", g.Config, "-o", atRest); r.code != 0 {
		t.Fatalf("backup at rest: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "backup", "-config", g.Config, "-o", atRest); r.code == 0 {
		t.Fatal("a backup overwrote an existing file")
	}
	live := listAllDevices(t, g, "bk")
	restored := restoreGate(t, g, atRest)
	got := listAllDevices(t, restored, "bk")
	if len(got) != len(live) {
		t.Fatalf("restored %d devices, the server had %d", len(got), len(live))
	}
	for id, view := range live {
		if got[id] != view {
			t.Fatalf("device %s:\nrestored %s\nserved   %s", id, got[id], view)
		}
	}
	restored.Stop()
	// Into a data directory that holds a store: refused.
	if r := runCLI(t, "restore", "-config", restored.Config, "-i", atRest); r.code == 0 || !strings.Contains(r.stderr, "already holds a store") {
		t.Errorf("restore over a store: exit %d %s", r.code, r.stderr)
	}

	// Under load: a snapshot between what was acknowledged before and
	// what was attempted by the end.
	snap := listAllDevices(t, restoreGate(t, g, underLoad), "bk")
	var missing, unknown []string
	for id := range ackBefore {
		if _, ok := snap[id]; !ok {
			missing = append(missing, id)
		}
	}
	for id := range snap {
		if !attempted[id] && !strings.HasPrefix(id, "bk_pre") {
			unknown = append(unknown, id)
		}
	}
	for i := range 100 {
		if _, ok := snap[fmt.Sprint("bk_pre", i)]; !ok {
			missing = append(missing, fmt.Sprint("bk_pre", i))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 || len(unknown) > 0 {
		t.Fatalf("the backup under load lacks %d devices created before it (%v) and holds %d never created (%v)",
			len(missing), missing, len(unknown), unknown)
	}
	t.Logf("backup under load: %d devices; %d acknowledged before it began, %d during it", len(snap), len(ackBefore), createdDuring)
}
