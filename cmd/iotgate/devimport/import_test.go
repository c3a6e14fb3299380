package devimport

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAPI answers POST /v5/iot/p1/devices and GET …/devices/{id} as the
// IoTDA API does: a node is unique in its product, the device_id defaults
// to {product_id}_{node_id}. Hooks change answers.
type fakeAPI struct {
	mu       sync.Mutex
	nodes    map[string]bool       // product/node
	devices  map[string]deviceBody // by device_id
	posts    atomic.Int64
	inFlight atomic.Int64
	maxIn    atomic.Int64
	// before, when set, may answer a POST itself (returns true).
	before func(w http.ResponseWriter, b deviceBody) bool
}

func newFakeAPI(t *testing.T) (*fakeAPI, *httptest.Server) {
	f := &fakeAPI{nodes: map[string]bool{}, devices: map[string]deviceBody{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// add stores b's device unless its node or id is taken.
func (f *fakeAPI) add(b deviceBody) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b.DeviceID == "" {
		b.DeviceID = b.ProductID + "_" + b.NodeID
	}
	key := b.ProductID + "/" + b.NodeID
	if _, taken := f.devices[b.DeviceID]; taken || f.nodes[key] {
		return false
	}
	f.nodes[key], f.devices[b.DeviceID] = true, b
	return true
}

func apiErr(w http.ResponseWriter, status int, code, msg string) {
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error_code": code, "error_msg": msg})
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for m := f.maxIn.Load(); n > m && !f.maxIn.CompareAndSwap(m, n); m = f.maxIn.Load() {
	}
	if r.Header.Get("X-Auth-Token") != "tok" {
		apiErr(w, 401, "IOTDA.000002", "The request is unauthorized.")
		return
	}
	const base = "/v5/iot/p1/"
	if !strings.HasPrefix(r.URL.Path, base) {
		apiErr(w, 403, "IOTDA.001002", "The credential is not authorized for project.")
		return
	}
	switch path := strings.TrimPrefix(r.URL.Path, base); {
	case path == "products" && r.Method == http.MethodGet:
		_ = json.NewEncoder(w).Encode(map[string]any{"products": []any{}})
	case strings.HasPrefix(path, "devices/") && r.Method == http.MethodGet:
		f.mu.Lock()
		d, ok := f.devices[strings.TrimPrefix(path, "devices/")]
		f.mu.Unlock()
		if !ok {
			apiErr(w, 404, "IOTDA.014000", "The device does not exist.")
			return
		}
		_ = json.NewEncoder(w).Encode(d)
	case path == "devices" && r.Method == http.MethodPost:
		f.posts.Add(1)
		var b deviceBody
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			apiErr(w, 400, "IOTDA.000008", err.Error())
			return
		}
		if f.before != nil && f.before(w, b) {
			return
		}
		time.Sleep(time.Millisecond) // let requests overlap
		if !f.add(b) {
			apiErr(w, 400, codeDeviceExists, "Invalid input. The device already exists: node_id already exists")
			return
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(b)
	default:
		apiErr(w, 404, "IOTDA.000008", "no such API")
	}
}

func writeCSV(t *testing.T, rows ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.csv")
	if err := os.WriteFile(path, []byte("node_id,product_id,device_id\n"+strings.Join(rows, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func goodRows(n int) []string {
	rows := make([]string, n)
	for i := range rows {
		rows[i] = fmt.Sprintf("n%d,p1,", i)
	}
	return rows
}

func options(srv *httptest.Server, file string) Options {
	return Options{API: srv.URL, Project: "p1", Token: "tok", File: file, Concurrency: 4, backoff: 10 * time.Millisecond}
}

func failures(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs[1:]
}

// A throttled or unavailable answer is retried (after Retry-After); a
// create whose answer was lost and that is retried finds its own device
// and counts it as already there, never twice.
func TestRunRetriesTransientFailures(t *testing.T) {
	api, srv := newFakeAPI(t)
	var calls atomic.Int64
	api.before = func(w http.ResponseWriter, b deviceBody) bool {
		switch calls.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "0")
			apiErr(w, 429, "IOTDA.000009", "too many requests")
			return true
		case 2:
			apiErr(w, 503, "IOTDA.000001", "Service unavailable")
			return true
		}
		return false
	}
	o := options(srv, writeCSV(t, "a,p1,"))
	o.Concurrency = 1
	sum, err := Run(context.Background(), o)
	if err != nil || sum.Created != 1 || sum.Failed != 0 || api.posts.Load() != 3 {
		t.Fatalf("%+v %v, %d posts", sum, err, api.posts.Load())
	}

	api.posts.Store(0)
	api.before = func(w http.ResponseWriter, b deviceBody) bool {
		if api.posts.Load() == 1 { // the create commits, its answer is lost
			api.add(b)
			apiErr(w, 503, "IOTDA.000001", "Service unavailable: it may have been applied")
			return true
		}
		return false
	}
	sum, err = Run(context.Background(), options(srv, writeCSV(t, "b,p1,")))
	if err != nil || sum.Created != 0 || sum.Existed != 1 || sum.Failed != 0 {
		t.Fatalf("a lost answer: %+v %v", sum, err)
	}
}

// IOTDA.014031 is "already there" only when the product holds the row's
// node: a fingerprint or device_id held by another device is a failure.
func TestRunConflictIsExistingOnlyForTheNode(t *testing.T) {
	api, srv := newFakeAPI(t)
	api.add(deviceBody{NodeID: "n0", ProductID: "p1"})
	api.add(deviceBody{NodeID: "other", ProductID: "p1", DeviceID: "taken"})
	api.add(deviceBody{NodeID: "n3", ProductID: "p1", DeviceID: "custom"})
	api.before = func(w http.ResponseWriter, b deviceBody) bool {
		if b.NodeID == "n1" {
			apiErr(w, 400, codeDeviceExists, "Invalid input. The device already exists: fingerprint already exists")
			return true
		}
		return false
	}
	o := options(srv, writeCSV(t,
		"n0,p1,",         // there
		"n1,p1,",         // its fingerprint taken
		"n2,p1,",         // new
		"n3,p1,",         // the node there under another device_id
		"n4,p1,taken",    // its device_id another node's
		"other,p1,taken", // there, under the id given
	))
	sum, err := Run(context.Background(), o)
	if err != nil || sum.Created != 1 || sum.Existed != 2 || sum.Failed != 3 {
		t.Fatalf("%+v %v", sum, err)
	}
	recs := failures(t, sum.Failures)
	slices.SortFunc(recs, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	if len(recs) != 3 || recs[0][0] != "3" || recs[0][1] != "n1" || recs[0][3] != codeDeviceExists || !strings.Contains(recs[0][4], "fingerprint") ||
		recs[1][1] != "n3" || recs[2][1] != "n4" || recs[2][3] != codeDeviceExists {
		t.Errorf("failures: %v", recs)
	}
}

// A refused credential stops the import at once, with one error, and
// lists no row as failed.
func TestRunStopsOnACredentialRefusal(t *testing.T) {
	api, srv := newFakeAPI(t)
	o := options(srv, writeCSV(t, goodRows(200)...))
	o.Token = "wrong"
	earlier := []byte("line,node_id,product_id,error_code,error_msg\n7,n7,p1,IOTDA.013000,no product\n")
	if err := os.WriteFile(FailuresPath(o.File), earlier, 0o600); err != nil {
		t.Fatal(err)
	}
	sum, err := Run(context.Background(), o)
	if !errors.Is(err, ErrCredential) || !strings.Contains(err.Error(), "IOTDA.000002") {
		t.Fatalf("err %v", err)
	}
	if sum.Failed != 0 || api.posts.Load() != 0 {
		t.Errorf("%+v", sum)
	}
	// Checked before anything is written: the last run's failures stay.
	if b, _ := os.ReadFile(FailuresPath(o.File)); string(b) != string(earlier) {
		t.Errorf("the failures file was rewritten: %q", b)
	}
	o.Token, o.Project = "tok", "other"
	if _, err := Run(context.Background(), o); !errors.Is(err, ErrCredential) {
		t.Errorf("another project: %v", err)
	}
}

// An API that stops answering part way stops the import (each row would
// wait out the same retries) without listing the abandoned rows as
// failures; the rerun resumes.
func TestRunStopsWhenTheAPIGoesAway(t *testing.T) {
	api, srv := newFakeAPI(t)
	var down, wentDown atomic.Bool
	api.before = func(w http.ResponseWriter, b deviceBody) bool {
		if b.NodeID == "n50" && wentDown.CompareAndSwap(false, true) {
			down.Store(true)
		}
		if !down.Load() {
			return false
		}
		conn, _, err := w.(http.Hijacker).Hijack() // no answer at all
		if err == nil {
			conn.Close()
		}
		return true
	}
	o := options(srv, writeCSV(t, goodRows(500)...))
	sum, err := Run(context.Background(), o)
	if !errors.Is(err, ErrUnreachable) || sum.Failed != 0 || !(sum.Created >= 40 && sum.Created < 100) || !(sum.Done < 500) {
		t.Fatalf("%+v %v", sum, err)
	}
	down.Store(false)
	sum, err = Run(context.Background(), o)
	if err != nil || sum.Created+sum.Existed != 500 || sum.Failed != 0 {
		t.Fatalf("resumed: %+v %v", sum, err)
	}
}

// Requests in flight never exceed the concurrency, and -rate paces them.
func TestRunConcurrencyAndRate(t *testing.T) {
	api, srv := newFakeAPI(t)
	o := options(srv, writeCSV(t, goodRows(300)...))
	o.Concurrency = 3
	sum, err := Run(context.Background(), o)
	if err != nil || sum.Created != 300 {
		t.Fatalf("%+v %v", sum, err)
	}
	if m := api.maxIn.Load(); m > 3 || m < 2 {
		t.Errorf("%d requests in flight at most, want 2..3", m)
	}

	_, srv = newFakeAPI(t)
	o = options(srv, writeCSV(t, goodRows(21)...))
	o.Rate = 100
	start := time.Now()
	if sum, err := Run(context.Background(), o); err != nil || sum.Created != 21 {
		t.Fatalf("%+v %v", sum, err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("21 rows at 100 a second took %v, want at least 200 ms", took)
	}
}

// A cancelled import stops, says it was interrupted, and does not list
// the rows it abandoned as failures.
func TestRunInterrupted(t *testing.T) {
	_, srv := newFakeAPI(t)
	o := options(srv, writeCSV(t, goodRows(1000)...))
	o.Rate = 200
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	sum, err := Run(ctx, o)
	if err != nil || !sum.Interrupted || sum.Done >= 1000 || sum.Done != sum.Created || sum.Failed != 0 {
		t.Fatalf("%+v %v", sum, err)
	}
	if recs := failures(t, sum.Failures); len(recs) != 0 {
		t.Errorf("failures: %v", recs)
	}
	// The rerun resumes.
	sum2, err := Run(context.Background(), o)
	if err != nil || sum2.Created+sum2.Existed != 1000 || sum2.Existed < sum.Created {
		t.Fatalf("resumed: %+v %v (first run %+v)", sum2, err, sum)
	}
}

func TestProgress(t *testing.T) {
	s := &Summary{Rows: 10, Done: 4, Created: 3, Existed: 1}
	var b strings.Builder
	p := &progress{w: &b, every: time.Hour, start: time.Now()}
	p.update(s, false) // the first line is due
	p.update(s, false) // an hour has not passed
	s.Done, s.Failed = 10, 6
	p.update(s, true)
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "4/10 rows ( 40%): 3 created, 1 already existed, 0 failed") ||
		!strings.HasPrefix(lines[1], "10/10 rows (100%)") || strings.Contains(b.String(), "\r") {
		t.Errorf("not a terminal:\n%q", b.String())
	}

	b.Reset()
	p = &progress{w: &b, terminal: true, start: time.Now()}
	p.update(s, false)
	p.update(s, false) // within terminalEvery: skipped
	p.update(s, true)
	if got := b.String(); strings.Count(got, "\r") != 2 || strings.Count(got, "\n") != 1 || !strings.HasSuffix(got, "\n") {
		t.Errorf("a terminal:\n%q", got)
	}
}

func TestOptionsChecked(t *testing.T) {
	good := Options{API: "http://h", Project: "p", Token: "t", File: "f.csv", Concurrency: 8}
	for _, tc := range []struct {
		name string
		edit func(*Options)
		msg  string
	}{
		{"no api", func(o *Options) { o.API = "" }, "URL is required"},
		{"api without scheme", func(o *Options) { o.API = "h:80" }, "must start with http://"},
		{"no project", func(o *Options) { o.Project = "" }, "project is required"},
		{"no token", func(o *Options) { o.Token = "" }, "token is required"},
		{"concurrency 0", func(o *Options) { o.Concurrency = 0 }, "must be 1 to 64"},
		{"concurrency over", func(o *Options) { o.Concurrency = 65 }, "must be 1 to 64"},
		{"negative rate", func(o *Options) { o.Rate = -1 }, "must not be negative"},
		{"failures is the input", func(o *Options) { o.Failures = "./f.csv" }, "cannot be the input"},
	} {
		o := good
		tc.edit(&o)
		if err := o.check(); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.msg)
		}
	}
	if err := good.check(); err != nil {
		t.Errorf("good options: %v", err)
	}
	if got := FailuresPath("/d/devices.csv"); got != "/d/devices.failures.csv" {
		t.Errorf("FailuresPath: %s", got)
	}
}
