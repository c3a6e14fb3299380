package batchtask

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

const project = "p1"

// testDescribe names an item's failure by its error's type.
func testDescribe(err error) ItemError {
	var (
		ve *registry.ValidationError
		ce *registry.ConflictError
		nf *registry.NotFoundError
	)
	switch {
	case errors.As(err, &ve):
		return ItemError{Code: "invalid", Msg: err.Error()}
	case errors.As(err, &ce):
		return ItemError{Code: "exists", Msg: err.Error()}
	case errors.As(err, &nf):
		return ItemError{Code: "notfound", Msg: err.Error()}
	}
	return ItemError{Code: "other", Msg: err.Error()}
}

type env struct {
	t     *testing.T
	store kv.Store
	reg   *registry.Registry
	extra []Kind
	lease registry.Lease // nil: always held
}

func newEnv(t *testing.T, extra ...Kind) *env {
	t.Helper()
	st, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: registry.Queues()})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Options{Store: st, MasterKey: bytes.Repeat([]byte{5}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close(); st.Close() })
	if _, err := reg.CreateProduct(context.Background(), registry.Product{ProjectID: project, ProductID: "meter", Name: "Meter",
		DeviceType: "Meter", ProtocolType: "MQTT"}); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, store: st, reg: reg, extra: extra}
}

// service returns a service over the env's store; its runner runs until
// the returned stop is called (stop waits for it).
func (e *env) service(l Limits, now func() time.Time) (*Service, func()) {
	s := New(Options{Store: e.store, Kinds: append(DeviceKinds(e.reg), e.extra...), Describe: testDescribe, Limits: l,
		Poll: 20 * time.Millisecond, Now: now, Lease: e.lease})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	e.t.Cleanup(stop)
	return s, stop
}

// wait polls the task until cond holds (10 s at most).
func (e *env) wait(s *Service, id string, what string, cond func(*Task) bool) *Task {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		t, err := s.Task(context.Background(), project, id)
		if err != nil {
			e.t.Fatal(err)
		}
		if cond(t) {
			return t
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("task %s: not %s after 10 s: %s %+v", id, what, t.Status, t.Progress)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ended(t *Task) bool { return t.Status.Ended() }

func (e *env) items(s *Service, id string) []Item {
	e.t.Helper()
	_, items, _, _, err := s.Items(context.Background(), project, id, ItemFilter{}, Page{Limit: 100_000})
	if err != nil {
		e.t.Fatal(err)
	}
	return items
}

// TestCreateDevicesRowByRow: each row of a createDevices file succeeds
// or fails on its own, with the error CreateDevice gives for it.
func TestCreateDevicesRowByRow(t *testing.T) {
	e := newEnv(t)
	// One worker: the second a1 runs after the first, in the same chunk.
	s, _ := e.service(Limits{Rate: 1000, Workers: 1}, nil)
	ctx := context.Background()
	if _, err := e.reg.CreateDevice(ctx, registry.NewDevice{ProjectID: project, NodeID: "taken", ProductID: "meter"}); err != nil {
		t.Fatal(err)
	}
	csv := "node_id,product_id,device_name,secret,timeout\n" +
		"a1,meter,first,secret0001,\n" +
		"taken,meter,,,\n" + // exists
		"a2,nosuch,,,\n" + // no such product
		"a3,meter,,short,\n" + // secret too short
		"a4,meter,,,soon\n" + // timeout not a number
		"a1,meter,,,\n" + // a1 again (after the first, in the same chunk: workers 1)
		"a5,meter,,,60\n"
	f, err := s.UploadFile(ctx, project, "rows.csv", []byte(csv))
	if err != nil {
		t.Fatal(err)
	}
	task, err := s.Create(ctx, NewTask{ProjectID: project, Name: "rows", Type: TypeCreateDevices, DocumentSource: f.ID})
	if err != nil || task.Status != StatusWaiting || task.Total != 7 {
		t.Fatalf("Create: %v %+v", err, task)
	}
	done := e.wait(s, task.ID, "ended", ended)
	if done.Status != StatusPartialSuccess || done.Progress.Success != 2 || done.Progress.Fail != 5 {
		t.Fatalf("task: %s %+v", done.Status, done.Progress)
	}
	want := []struct {
		status      ItemStatus
		code, inMsg string
	}{
		{ItemSuccess, "", ""}, {ItemFail, "exists", "taken"}, {ItemFail, "notfound", "nosuch"},
		{ItemFail, "invalid", "auth_info.secret"}, {ItemFail, "invalid", "timeout"}, {ItemFail, "exists", "a1"}, {ItemSuccess, "", ""},
	}
	for i, it := range e.items(s, task.ID) {
		w := want[i]
		if it.Status != w.status || w.code == "" && (it.Error != nil || it.Output != "meter_"+it.Target) ||
			w.code != "" && (it.Error == nil || it.Error.Code != w.code || !strings.Contains(it.Error.Msg, w.inMsg)) {
			t.Errorf("row %d: %+v %+v, want %+v", i, it, it.Error, w)
		}
	}
	d, err := e.reg.Device(ctx, "meter_a5")
	if err != nil || d.Auth.Timeout != 60 {
		t.Fatalf("device of the last row: %v %+v", err, d)
	}
}

// TestResumeDoesNotRedo: a runner stopped halfway (its context ended
// while items were in flight) leaves the task Processing; a new one on
// the same store finishes it without doing a row twice (a row redone
// would fail as "exists").
func TestResumeDoesNotRedo(t *testing.T) {
	e := newEnv(t)
	s, stop := e.service(Limits{Rate: 400, Workers: 3, Chunk: 8}, nil)
	ctx := context.Background()
	var b strings.Builder
	b.WriteString("node_id,product_id\n")
	for i := range 200 {
		fmt.Fprintf(&b, "n%03d,meter\n", i)
	}
	f, err := s.UploadFile(ctx, project, "many.csv", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	task, err := s.Create(ctx, NewTask{ProjectID: project, Name: "many", Type: TypeCreateDevices, DocumentSource: f.ID})
	if err != nil {
		t.Fatal(err)
	}
	e.wait(s, task.ID, "a third done", func(t *Task) bool { return t.Progress.Success >= 60 })
	stop()
	mid, err := s.Task(ctx, project, task.ID)
	if err != nil || mid.Status != StatusProcessing || mid.Progress.Waiting == 0 {
		t.Fatalf("after the stop: %v %s %+v", err, mid.Status, mid.Progress)
	}
	s2, _ := e.service(Limits{Rate: 1000, Workers: 3, Chunk: 8}, nil)
	done := e.wait(s2, task.ID, "ended", ended)
	if done.Status != StatusSuccess || done.Progress.Success != 200 {
		t.Fatalf("after the restart: %s %+v", done.Status, done.Progress)
	}
	list, err := e.reg.ListDevices(ctx, project, registry.DeviceFilter{ProductID: "meter"}, registry.Page{Limit: 1})
	if err != nil || list.Count != 200 {
		t.Fatalf("devices: %v %+v", err, list)
	}
}

// asyncKind leaves its items Processing for FinishItem.
type asyncKind struct{ started atomic.Int32 }

func (*asyncKind) Type() string { return "asyncThing" }
func (*asyncKind) Plan(_ context.Context, t NewTask, _ *Sheet) ([]NewItem, error) {
	var items []NewItem
	for _, id := range t.Targets {
		items = append(items, NewItem{Target: id})
	}
	return items, nil
}
func (k *asyncKind) Do(context.Context, *Task, *Item, Recorder) (Outcome, error) {
	k.started.Add(1)
	return Outcome{Status: ItemProcessing}, nil
}

// TestFinishItemCompletesAsyncTask: items a kind leaves Processing keep
// the task Processing until FinishItem records each.
func TestFinishItemCompletesAsyncTask(t *testing.T) {
	k := &asyncKind{}
	e := newEnv(t, k)
	s, _ := e.service(Limits{Rate: 1000}, nil)
	ctx := context.Background()
	task, err := s.Create(ctx, NewTask{ProjectID: project, Name: "up", Type: "asyncThing", Targets: []string{"d1", "d2", "d3"}})
	if err != nil {
		t.Fatal(err)
	}
	e.wait(s, task.ID, "all processing", func(t *Task) bool { return t.Progress.Processing == 3 })
	time.Sleep(100 * time.Millisecond) // a few runner rounds
	if cur, _ := s.Task(ctx, project, task.ID); cur.Status != StatusProcessing || k.started.Load() != 3 {
		t.Fatalf("with items processing: %s, %d started", cur.Status, k.started.Load())
	}
	if err := s.FinishItem(ctx, task.ID, "d1", Outcome{Status: ItemSuccess, Output: "v2"}); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishItem(ctx, task.ID, "d1", Outcome{Status: ItemSuccess, Output: "v2"}); err != nil {
		t.Fatalf("a repeated finish: %v", err)
	}
	if err := s.FinishItem(ctx, task.ID, "d1", Outcome{Status: ItemFail, Err: errors.New("late")}); !errors.Is(err, ErrNotProcessing) {
		t.Fatalf("another outcome for a finished item: %v", err)
	}
	var nf *NotFoundError
	if err := s.FinishItem(ctx, task.ID, "nobody", Outcome{Status: ItemSuccess}); !errors.As(err, &nf) {
		t.Fatalf("finish an unknown target: %v", err)
	}
	if err := s.FinishItem(ctx, task.ID, "d2", Outcome{Status: ItemFail, Err: errors.New("device said no")}); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishItem(ctx, task.ID, "d3", Outcome{Status: ItemSuccess}); err != nil {
		t.Fatal(err)
	}
	done := e.wait(s, task.ID, "ended", ended)
	items := e.items(s, task.ID)
	if done.Status != StatusPartialSuccess || items[0].Output != "v2" || items[1].Error == nil || items[1].Error.Msg != "device said no" {
		t.Fatalf("task %s, items %+v", done.Status, items)
	}
	if err := s.Delete(ctx, project, task.ID); err != nil {
		t.Fatal(err)
	}
	e.waitGone(task.ID)
}

// waitGone waits until no key of the task is left in the store.
func (e *env) waitGone(id string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		err := e.store.View(context.Background(), func(rd kv.Reader) error {
			for _, p := range [][]byte{taskKey(id), activeKey(id), prefix(famItem, id), prefix(famTarget, id), prefix(famCount, id)} {
				if err := rd.Scan(p, nil, false, func(k, _ []byte) (bool, error) { n++; return true, nil }); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			e.t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("task %s: %d keys left 10 s after its delete", id, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStop: a stopped task's waiting items end Stopped; an ended task
// cannot be stopped again, a running one cannot be deleted.
func TestStop(t *testing.T) {
	e := newEnv(t)
	s, _ := e.service(Limits{Rate: 20, Workers: 1, Chunk: 2}, nil)
	ctx := context.Background()
	var targets []string
	for i := range 300 {
		id := fmt.Sprintf("meter_s%d", i)
		if _, err := e.reg.CreateDevice(ctx, registry.NewDevice{ProjectID: project, NodeID: fmt.Sprint("s", i), ProductID: "meter"}); err != nil {
			t.Fatal(err)
		}
		targets = append(targets, id)
	}
	task, err := s.Create(ctx, NewTask{ProjectID: project, Name: "freeze", Type: TypeFreezeDevices, Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	e.wait(s, task.ID, "started", func(t *Task) bool { return t.Progress.Success > 0 })
	if err := s.Delete(ctx, project, task.ID); !errors.Is(err, ErrActive) {
		t.Fatalf("delete a running task: %v", err)
	}
	if err := s.Stop(ctx, project, task.ID); err != nil {
		t.Fatal(err)
	}
	done := e.wait(s, task.ID, "ended", ended)
	p := done.Progress
	if done.Status != StatusStopped || p.Stopped == 0 || p.Success+p.Stopped != 300 || p.Waiting != 0 {
		t.Fatalf("stopped task: %s %+v", done.Status, p)
	}
	if err := s.Stop(ctx, project, task.ID); !errors.Is(err, ErrEnded) {
		t.Fatalf("stop an ended task: %v", err)
	}
	d, err := e.reg.Device(ctx, targets[0])
	if err != nil || !d.Frozen {
		t.Fatalf("the first target: %v %+v", err, d)
	}
	_, stopped, n, _, err := s.Items(ctx, project, task.ID, ItemFilter{Status: ItemStopped}, Page{Limit: 5})
	if err != nil || n != p.Stopped || len(stopped) != 5 {
		t.Fatalf("stopped items: %v %d %d", err, n, len(stopped))
	}
	if err := s.Delete(ctx, project, task.ID); err != nil {
		t.Fatal(err)
	}
	var nf *NotFoundError
	if _, err := s.Task(ctx, project, task.ID); !errors.As(err, &nf) {
		t.Fatalf("a deleted task: %v", err)
	}
	e.waitGone(task.ID)
}

// TestAbandonedInitializingFails: a task left Initializing by a creator
// that died is failed once it is older than initTimeout.
func TestAbandonedInitializingFails(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	var offset atomic.Int64
	clock := func() time.Time { return now.Add(time.Duration(offset.Load())) }
	ctx := context.Background()
	err := e.store.Update(ctx, func(w kv.Txn) error {
		if err := putJSON(w, taskKey("t1"), Task{ID: "t1", ProjectID: project, Name: "x", Type: TypeCreateDevices,
			Status: StatusInitializing, Created: now, Total: 10}); err != nil {
			return err
		}
		if err := w.Set(listKey(project, "t1"), nil); err != nil {
			return err
		}
		return w.Set(activeKey("t1"), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := e.service(Limits{}, clock)
	time.Sleep(100 * time.Millisecond)
	if cur, _ := s.Task(ctx, project, "t1"); cur.Status != StatusInitializing {
		t.Fatalf("a fresh initializing task: %s", cur.Status)
	}
	offset.Store(int64(2 * initTimeout))
	done := e.wait(s, "t1", "failed", ended)
	if done.Status != StatusFail || !strings.Contains(done.StatusMsg, "not fully created") {
		t.Fatalf("abandoned task: %s %q", done.Status, done.StatusMsg)
	}
}

// TestCreateRefusals: bad requests are refused whole, naming the field.
func TestCreateRefusals(t *testing.T) {
	e := newEnv(t)
	s, _ := e.service(Limits{MaxItems: 3}, nil)
	ctx := context.Background()
	f, err := s.UploadFile(ctx, project, "del.csv", []byte("device_id\nx\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		nt    NewTask
		field string
	}{
		{"unknown type", NewTask{Name: "a", Type: "explode", Targets: []string{"x"}}, "task_type"},
		{"bad name", NewTask{Name: "a b", Type: TypeDeleteDevices, Targets: []string{"x"}}, "task_name"},
		{"too many targets", NewTask{Name: "a", Type: TypeDeleteDevices, Targets: []string{"1", "2", "3", "4"}}, "targets"},
		{"nothing", NewTask{Name: "a", Type: TypeDeleteDevices}, "targets"},
		{"no file", NewTask{Name: "a", Type: TypeCreateDevices, DocumentSource: "nosuch"}, "document_source"},
		{"file of another template", NewTask{Name: "a", Type: TypeCreateDevices, DocumentSource: f.ID}, "file"},
		{"create from targets", NewTask{Name: "a", Type: TypeCreateDevices, Targets: []string{"x"}}, "document_source"},
	}
	for _, tt := range tests {
		tt.nt.ProjectID = project
		_, err := s.Create(ctx, tt.nt)
		var ve *registry.ValidationError
		if !errors.As(err, &ve) || ve.Field != tt.field {
			t.Errorf("%s: want a %s error, got %v", tt.name, tt.field, err)
		}
	}
	if _, err := s.UploadFile(ctx, project, "x.csv", []byte("serial\n1\n")); err == nil || !strings.Contains(err.Error(), "matches no batch task template") {
		t.Errorf("upload with an unknown header: %v", err)
	}
	if _, err := s.UploadFile(ctx, "p2", "del.csv", []byte("device_id\nx\n")); err != nil {
		t.Fatal(err)
	}
	if fs, err := s.Files(ctx, project); err != nil || len(fs) != 1 || fs[0].ID != f.ID {
		t.Fatalf("files of %s: %v %+v", project, err, fs)
	}
}

// switchLease is a Lease held while on is set.
type switchLease struct{ on atomic.Bool }

func (l *switchLease) Hold(context.Context, string, time.Duration) (bool, error) {
	return l.on.Load(), nil
}

// TestOnlyTheLeaseHolderRuns: a node without the batchtasks lease runs
// no task; once it holds it, it does.
func TestOnlyTheLeaseHolderRuns(t *testing.T) {
	e := newEnv(t)
	lease := &switchLease{}
	e.lease = lease
	s, _ := e.service(Limits{Rate: 1000}, nil)
	ctx := context.Background()
	if _, err := e.reg.CreateDevice(ctx, registry.NewDevice{ProjectID: project, NodeID: "l1", ProductID: "meter"}); err != nil {
		t.Fatal(err)
	}
	task, err := s.Create(ctx, NewTask{ProjectID: project, Name: "del", Type: TypeDeleteDevices, Targets: []string{"meter_l1"}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond) // several polls
	if cur, _ := s.Task(ctx, project, task.ID); cur.Status != StatusWaiting || cur.Progress.Waiting != 1 {
		t.Fatalf("without the lease: %s %+v", cur.Status, cur.Progress)
	}
	lease.on.Store(true)
	if done := e.wait(s, task.ID, "ended", ended); done.Status != StatusSuccess {
		t.Fatalf("with the lease: %s %+v", done.Status, done.Progress)
	}
	var nf *registry.NotFoundError
	if _, err := e.reg.Device(ctx, "meter_l1"); !errors.As(err, &nf) {
		t.Fatalf("the deleted device: %v", err)
	}
}
