package test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// importCSV writes a CSV of n good rows for product (node ids
// prefix-0000…), with bad rows (line number -> record) put in place of
// the good rows at those lines, and returns its path.
func importCSV(t *testing.T, n int, product, prefix string, bad map[int]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("node_id,product_id,device_name,secret,secure_access,timeout,tags\n")
	for line := 2; line < n+2; line++ {
		if rec, ok := bad[line]; ok {
			b.WriteString(rec + "\n")
			continue
		}
		fmt.Fprintf(&b, "%s-%04d,%s,Meter %d,secret-%04d-0123456789,false,60,site=s%d;batch=1\n", prefix, line, product, line, line, line%7)
	}
	path := filepath.Join(t.TempDir(), "devices.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runImport runs iotgate devices import against g (60 s at most).
func runImport(t *testing.T, g *Gate, file string, extra ...string) cliResult {
	t.Helper()
	args := append([]string{"devices", "import", "-api", g.API, "-project", g.Project, "-token", g.Token}, extra...)
	return runCLIFor(t, 60*time.Second, append(args, file)...)
}

// productCount is the product's device count as the API gives it.
func productCount(g *Gate, product string) int {
	g.t.Helper()
	page := g.MustDo(http.StatusOK, "GET", g.P("/devices?"+url.Values{"product_id": {product}, "limit": {"1"}}.Encode()), nil)
	return int(page["page"].(map[string]any)["count"].(float64))
}

// readFailures reads a failures CSV: its records after the header.
func readFailures(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("failures file: %v", err)
	}
	if len(recs) == 0 || !slices.Equal(recs[0], []string{"line", "node_id", "product_id", "error_code", "error_msg"}) {
		t.Fatalf("failures file header: %v", recs)
	}
	return recs[1:]
}

// An import of 1,000 rows, 5 of them bad, creates the 995, lists the 5
// with their reasons (the API's error_code and error_msg for the rows it
// refused, the line and column for the rows the file got wrong), and
// run again creates nothing, counts the 995 as already there and lists
// the same 5.
func TestDevicesImport(t *testing.T) {
	g := StartGate(t, GateOptions{LogLevel: "info"})
	g.CreateProduct("imp", "MQTT")
	bad := map[int]string{
		10:  "imp-bad-10,imp,x,secret-bad-10-0123456789,false,abc,",   // timeout not a number
		200: "imp-bad-200,imp,x,secret-bad-200-0123456,false,60,oops", // tag not key=value
		400: ",imp,x,secret-bad-400-0123456789,false,60,",             // no node_id
		600: "imp-bad-600,nosuch,x,secret-bad-600-0123456789,false,60,",
		800: "imp-bad-800,imp,x,secret-bad-800-0123456789,false,3000000000,", // over the API's maximum
	}
	file := importCSV(t, 1000, "imp", "imp", bad)
	want := map[string][2]string{ // line -> error_code, a piece of error_msg
		"10":  {"", "line 10: column timeout"},
		"200": {"", "line 200: column tags"},
		"400": {"", "line 400: column node_id: is required"},
		"600": {"IOTDA.013000", "nosuch"},
		"800": {"IOTDA.000006", "timeout"},
	}
	checkFailures := func(run string) {
		t.Helper()
		recs := readFailures(t, strings.TrimSuffix(file, ".csv")+".failures.csv")
		if len(recs) != len(want) {
			t.Fatalf("%s: %d failures, want %d: %v", run, len(recs), len(want), recs)
		}
		for _, r := range recs {
			w, ok := want[r[0]]
			if !ok || r[3] != w[0] || !strings.Contains(r[4], w[1]) {
				t.Errorf("%s: failure %v; want line %s with code %q and a message containing %q", run, r, r[0], w[0], w[1])
			}
		}
	}

	r := runImport(t, g, file)
	if r.code != 1 || !strings.Contains(r.stdout, "1000 rows: 995 created, 0 already existed, 5 failed") {
		t.Fatalf("first import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "devices.failures.csv (5 rows") {
		t.Errorf("the summary does not name the failures file:\n%s", r.stdout)
	}
	// Not a terminal: whole progress lines, the last one complete.
	if !strings.Contains(r.stderr, "1000/1000 rows (100%): 995 created, 0 already existed, 5 failed") || strings.Contains(r.stderr, "\r") {
		t.Errorf("progress on a pipe:\n%q", r.stderr)
	}
	t.Logf("first import: %s", r.stdout)
	checkFailures("first import")
	if n := productCount(g, "imp"); n != 995 {
		t.Errorf("the product holds %d devices, want 995", n)
	}
	// A row's fields reach the device.
	page := g.MustDo(http.StatusOK, "GET", g.P("/devices?product_id=imp&node_id=imp-0002"), nil)
	devs := page["devices"].([]any)
	if len(devs) != 1 {
		t.Fatalf("imp-0002: %v", page)
	}
	d := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+devs[0].(map[string]any)["device_id"].(string)), nil)
	auth := d["auth_info"].(map[string]any)
	if d["device_name"] != "Meter 2" || auth["secure_access"] != false || auth["timeout"] != float64(60) || len(d["tags"].([]any)) != 2 {
		t.Errorf("imp-0002 as created: %v", d)
	}

	r = runImport(t, g, file)
	if r.code != 1 || !strings.Contains(r.stdout, "1000 rows: 0 created, 995 already existed, 5 failed") {
		t.Fatalf("second import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("second import: %s", r.stdout)
	checkFailures("second import")
	if n := productCount(g, "imp"); n != 995 {
		t.Errorf("after the second import the product holds %d devices, want 995", n)
	}

	// Wrong token: one clear error, nothing imported, exit 2.
	r = runCLIFor(t, 30*time.Second, "devices", "import", "-api", g.API, "-project", g.Project, "-token", "token-wrong-0123456789", file)
	if r.code != 2 || !strings.Contains(r.stderr, "the API refused the credential") || strings.Contains(r.stderr, "token-wrong") {
		t.Errorf("a wrong token: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// An import killed part way (SIGKILL, nothing flushed) and run again
// creates every row exactly once: the rerun creates just the rows the
// killed run had not, and counts the others as already there.
func TestDevicesImportResumes(t *testing.T) {
	g := StartGate(t, GateOptions{LogLevel: "info"})
	g.CreateProduct("res", "MQTT")
	file := importCSV(t, 1000, "res", "res", nil)

	cmd := exec.Command(binary(t), "devices", "import", "-api", g.API, "-project", g.Project, "-token", g.Token,
		"-rate", "200", "-concurrency", "4", file)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for productCount(g, "res") < 300 {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("300 devices not created in 30 s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	time.Sleep(200 * time.Millisecond) // creates the killed run had sent land
	before := productCount(g, "res")
	if before >= 1000 {
		t.Fatalf("the import finished before it was killed (%d devices): the test proves nothing", before)
	}

	r := runImport(t, g, file)
	want := fmt.Sprintf("1000 rows: %d created, %d already existed, 0 failed", 1000-before, before)
	if r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Fatalf("resumed import: exit %d, want 0 and %q\n%s%s", r.code, want, r.stdout, r.stderr)
	}
	if recs := readFailures(t, strings.TrimSuffix(file, ".csv")+".failures.csv"); len(recs) != 0 {
		t.Errorf("failures after the resumed import: %v", recs)
	}
	// Every row's node, once.
	nodes := map[string]int{}
	for _, v := range listAllDevices(t, g, "res") {
		var d struct {
			NodeID string `json:"node_id"`
		}
		if err := json.Unmarshal([]byte(v), &d); err != nil {
			t.Fatal(err)
		}
		nodes[d.NodeID]++
	}
	if len(nodes) != 1000 {
		t.Errorf("%d distinct nodes, want 1000", len(nodes))
	}
	for line := 2; line < 1002; line++ {
		if n := nodes[fmt.Sprintf("res-%04d", line)]; n != 1 {
			t.Errorf("res-%04d: %d devices, want 1", line, n)
		}
	}
}

// Against the API's own per-credential rate limit the import's 429s are
// retried after their Retry-After: every row is created, none fails.
func TestDevicesImportThrottled(t *testing.T) {
	g := StartGate(t, GateOptions{LogLevel: "info", APILimits: "rate: 40\nburst: 10\nunauthenticated_rate: 0\n"})
	g.CreateProduct("thr", "MQTT")
	file := importCSV(t, 80, "thr", "thr", nil)
	r := runImport(t, g, file, "-concurrency", "8")
	if r.code != 0 || !strings.Contains(r.stdout, "80 rows: 80 created, 0 already existed, 0 failed") {
		t.Fatalf("throttled import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The test proves something only if the API did throttle.
	if !strings.Contains(g.Logs(), "credential over its rate") {
		t.Errorf("the API never throttled the import; logs:\n%s", g.Logs())
	}
}
