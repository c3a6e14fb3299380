package batchtask

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// fakeDeliverer takes firmware items as the LwM2M listener would, and
// counts them by upgrade and device.
type fakeDeliverer struct {
	mu  sync.Mutex
	got []registry.FirmwareDelivery
}

func (f *fakeDeliverer) DeliverFirmware(d registry.FirmwareDelivery) {
	f.mu.Lock()
	f.got = append(f.got, d)
	f.mu.Unlock()
}

func (f *fakeDeliverer) deliveries() []registry.FirmwareDelivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]registry.FirmwareDelivery(nil), f.got...)
}

// firmwareEnv adds an LwM2M product "nb" with devices nb1..nb3, a
// firmware package for it, a software package, and an MQTT device of
// product "meter"; it returns the packages' ids.
func firmwareEnv(t *testing.T, e *env) (fw, sw string) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.reg.CreateProduct(ctx, registry.Product{ProjectID: project, ProductID: "nb", Name: "NB",
		DeviceType: "Meter", ProtocolType: "CoAP"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct{ node, product string }{{"nb1", "nb"}, {"nb2", "nb"}, {"nb3", "nb"}, {"mq1", "meter"}} {
		if _, err := e.reg.CreateDevice(ctx, registry.NewDevice{ProjectID: project, NodeID: n.node, DeviceID: n.node, ProductID: n.product}); err != nil {
			t.Fatal(err)
		}
	}
	add := func(typ string) string {
		p, err := e.reg.AddOTAPackage(ctx, project, registry.OTAPackage{PackageType: typ, ProductID: "nb", Version: "2.0"},
			bytes.NewReader([]byte("image "+typ)), "")
		if err != nil {
			t.Fatal(err)
		}
		return p.PackageID
	}
	return add(registry.PackageTypeFirmware), add(registry.PackageTypeSoftware)
}

func docOf(ids ...string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"package_ids": ids})
	return b
}

func TestFirmwarePlan(t *testing.T) {
	e := newEnv(t)
	fw, sw := firmwareEnv(t, e)
	ctx := context.Background()
	if _, err := e.reg.CreateProduct(ctx, registry.Product{ProjectID: project, ProductID: "mqp", Name: "M",
		DeviceType: "Meter", ProtocolType: "MQTT"}); err != nil {
		t.Fatal(err)
	}
	mq, err := e.reg.AddOTAPackage(ctx, project, registry.OTAPackage{PackageType: registry.PackageTypeFirmware, ProductID: "mqp", Version: "1"},
		bytes.NewReader([]byte("x")), "")
	if err != nil {
		t.Fatal(err)
	}
	k := FirmwareKind(e.reg)
	for _, tc := range []struct {
		name    string
		doc     json.RawMessage
		targets []string
		want    int    // items
		field   string // of the ValidationError
		is      error  // or the error it wraps
		nf      registry.Entity
	}{
		{name: "ok", doc: docOf(fw), targets: []string{"nb1", "nb2", "mq1"}, want: 3},
		{name: "package_id alias", doc: json.RawMessage(`{"package_id":"` + fw + `"}`), targets: []string{"nb1"}, want: 1},
		{name: "no document", targets: []string{"nb1"}, field: "document"},
		{name: "document not an object", doc: json.RawMessage(`[1]`), targets: []string{"nb1"}, field: "document"},
		{name: "no package", doc: json.RawMessage(`{}`), targets: []string{"nb1"}, field: "document.package_ids"},
		{name: "two packages", doc: docOf(fw, sw), targets: []string{"nb1"}, field: "document.package_ids"},
		{name: "software package", doc: docOf(sw), targets: []string{"nb1"}, field: "document.package_ids"},
		{name: "unknown package", doc: docOf("0123456789abcdef01234567"), targets: []string{"nb1"}, nf: registry.EntityOTAPackage},
		{name: "MQTT product", doc: docOf(mq.PackageID), targets: []string{"nb1"}, is: registry.ErrUnsupported},
		{name: "no targets", doc: docOf(fw), field: "targets"},
		{name: "a target twice", doc: docOf(fw), targets: []string{"nb1", "nb2", "nb1"}, field: "targets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items, err := k.Plan(ctx, NewTask{ProjectID: project, Name: "fw", Type: TypeFirmwareUpgrade, Document: tc.doc, Targets: tc.targets}, nil)
			var ve *registry.ValidationError
			var nf *registry.NotFoundError
			switch {
			case tc.field != "":
				if !errors.As(err, &ve) || ve.Field != tc.field {
					t.Fatalf("want a ValidationError on %s, got %v", tc.field, err)
				}
			case tc.is != nil:
				if !errors.Is(err, tc.is) {
					t.Fatalf("want %v, got %v", tc.is, err)
				}
			case tc.nf != 0:
				if !errors.As(err, &nf) || nf.Kind != tc.nf {
					t.Fatalf("want NotFound of kind %v, got %v", tc.nf, err)
				}
			default:
				if err != nil || len(items) != tc.want {
					t.Fatalf("items %v, err %v; want %d", items, err, tc.want)
				}
			}
		})
	}
}

// firmwareService is a service with the firmwareUpgrade kind, wired to
// the registry's firmware hooks as cmd/iotgate wires it.
func firmwareService(e *env) (*Service, func()) {
	s, stop := e.service(Limits{Workers: 2, Rate: 1000}, nil)
	e.reg.OnFirmwareItemChange(s.TrackFirmware)
	e.reg.OnFirmwareItemDone(s.FirmwareItemDone)
	return s, stop
}

func TestFirmwareTaskRuns(t *testing.T) {
	e := newEnv(t)
	e.extra = []Kind{FirmwareKind(e.reg)}
	fw, _ := firmwareEnv(t, e)
	d := &fakeDeliverer{}
	e.reg.SetFirmwareDeliverer(d)
	s, _ := firmwareService(e)
	ctx := context.Background()
	task, err := s.Create(ctx, NewTask{ProjectID: project, Name: "fw", Type: TypeFirmwareUpgrade, Document: docOf(fw),
		Targets: []string{"nb1", "nb2", "mq1", "nosuch"}})
	if err != nil {
		t.Fatal(err)
	}
	e.wait(s, task.ID, "devices refused, the rest processing", func(t *Task) bool { return t.Progress.Processing == 2 && t.Progress.Fail == 2 })
	got := d.deliveries()
	if len(got) != 2 || got[0].UpgradeID == got[1].UpgradeID {
		t.Fatalf("deliveries %+v: want one job per device of the package's product", got)
	}
	byTarget := func() map[string]Item {
		m := map[string]Item{}
		for _, it := range e.items(s, task.ID) {
			m[it.Target] = it
		}
		return m
	}
	items := byTarget()
	if it := items["mq1"]; it.Status != ItemFail || it.Error == nil || it.Error.Code != "invalid" || !strings.Contains(it.Error.Msg, "product meter") {
		t.Fatalf("device of another product: %+v %+v", it, it.Error)
	}
	if it := items["nosuch"]; it.Status != ItemFail || it.Error == nil || it.Error.Code != "notfound" {
		t.Fatalf("unknown device: %+v %+v", it, it.Error)
	}
	for _, dv := range got {
		if it := items[dv.DeviceID]; it.Status != ItemProcessing || !strings.HasSuffix(it.Output, ": queued") || !strings.Contains(it.Output, dv.UpgradeID) {
			t.Fatalf("%s: %+v", dv.DeviceID, it)
		}
	}
	upg := map[string]string{}
	for _, dv := range got {
		upg[dv.DeviceID] = dv.UpgradeID
	}
	report := func(dev string, rep registry.FirmwareReport) {
		t.Helper()
		if err := e.reg.ReportFirmware(ctx, upg[dev], dev, rep); err != nil {
			t.Fatal(err)
		}
	}
	report("nb1", registry.FirmwareReport{Step: registry.StepDownloading, State: 1, Result: 0, Desc: "the device downloads coap://x/fw/t"})
	if it := byTarget()["nb1"]; it.Status != ItemProcessing || !strings.HasSuffix(it.Output, "downloading: the device downloads coap://x/fw/t") {
		t.Fatalf("progress not shown: %+v", it)
	}
	report("nb1", registry.FirmwareReport{Step: registry.StepSucceeded, State: 0, Result: 1})
	report("nb2", registry.FirmwareReport{Step: registry.StepFailed, State: 0, Result: 5, Desc: "the device reports Update Result 5"})
	// A late notification after the end changes nothing.
	report("nb2", registry.FirmwareReport{Step: registry.StepSucceeded, State: 0, Result: 1})
	done := e.wait(s, task.ID, "ended", ended)
	if done.Status != StatusPartialSuccess || done.Progress.Success != 1 || done.Progress.Fail != 3 || done.Progress.Processing != 0 {
		t.Fatalf("task %s %+v", done.Status, done.Progress)
	}
	items = byTarget()
	if it := items["nb1"]; it.Status != ItemSuccess || !strings.Contains(it.Output, "version 2.0 installed") {
		t.Fatalf("nb1: %+v", it)
	}
	if it := items["nb2"]; it.Status != ItemFail || it.Error == nil || !strings.Contains(it.Error.Msg, "Update Result 5") {
		t.Fatalf("nb2: %+v %+v", it, it.Error)
	}
}

// TestFirmwareTaskResumes: the runner stops with items processing; a
// new runner (a restart) starts no second job for them, and
// ResumeFirmwareUpgrades hands the deliverer exactly the open jobs; their
// ends finish the task once.
func TestFirmwareTaskResumes(t *testing.T) {
	e := newEnv(t)
	e.extra = []Kind{FirmwareKind(e.reg)}
	fw, _ := firmwareEnv(t, e)
	d := &fakeDeliverer{}
	e.reg.SetFirmwareDeliverer(d)
	s, stop := firmwareService(e)
	ctx := context.Background()
	task, err := s.Create(ctx, NewTask{ProjectID: project, Name: "fw", Type: TypeFirmwareUpgrade, Document: docOf(fw),
		Targets: []string{"nb1", "nb2", "nb3"}})
	if err != nil {
		t.Fatal(err)
	}
	e.wait(s, task.ID, "all processing", func(t *Task) bool { return t.Progress.Processing == 3 })
	first := d.deliveries()
	if err := e.reg.ReportFirmware(ctx, first[0].UpgradeID, first[0].DeviceID, registry.FirmwareReport{Step: registry.StepSucceeded, State: 0, Result: 1}); err != nil {
		t.Fatal(err)
	}
	stop()

	d2 := &fakeDeliverer{}
	e.reg.SetFirmwareDeliverer(d2)
	s2, _ := e.service(Limits{Workers: 2, Rate: 1000}, nil)
	n, err := e.reg.ResumeFirmwareUpgrades(ctx)
	if err != nil || n != 2 {
		t.Fatalf("resumed %d, %v; want the 2 open items", n, err)
	}
	time.Sleep(100 * time.Millisecond) // runner rounds: nothing to start
	again := d2.deliveries()
	if len(again) != 2 {
		t.Fatalf("after the restart the deliverer got %+v; want the 2 open jobs only", again)
	}
	for _, dv := range again {
		if dv.UpgradeID == first[0].UpgradeID {
			t.Fatalf("the finished job was handed again: %+v", dv)
		}
		if err := e.reg.ReportFirmware(ctx, dv.UpgradeID, dv.DeviceID, registry.FirmwareReport{Step: registry.StepSucceeded, State: 0, Result: 1}); err != nil {
			t.Fatal(err)
		}
	}
	done := e.wait(s2, task.ID, "ended", ended)
	if done.Status != StatusSuccess || done.Progress.Success != 3 || done.Progress.Total != 3 {
		t.Fatalf("task %s %+v", done.Status, done.Progress)
	}
}

// TestFirmwareRetry: a failed device is retried (a new job, the task
// back to Processing) and ends Success; a target that did not fail, or
// is not in the task, is refused alone; a createDevices task cannot be
// retried.
func TestFirmwareRetry(t *testing.T) {
	e := newEnv(t)
	e.extra = []Kind{FirmwareKind(e.reg)}
	fw, _ := firmwareEnv(t, e)
	d := &fakeDeliverer{}
	e.reg.SetFirmwareDeliverer(d)
	s, _ := firmwareService(e)
	ctx := context.Background()
	task, err := s.Create(ctx, NewTask{ProjectID: project, Name: "fw", Type: TypeFirmwareUpgrade, Document: docOf(fw),
		Targets: []string{"nb1", "nb2"}})
	if err != nil {
		t.Fatal(err)
	}
	e.wait(s, task.ID, "processing", func(t *Task) bool { return t.Progress.Processing == 2 })
	first := d.deliveries()
	for _, dv := range first {
		rep := registry.FirmwareReport{Step: registry.StepSucceeded, State: 0, Result: 1}
		if dv.DeviceID == "nb2" {
			rep = registry.FirmwareReport{Step: registry.StepFailed, State: 0, Result: 4, Desc: "connection lost"}
		}
		if err := e.reg.ReportFirmware(ctx, dv.UpgradeID, dv.DeviceID, rep); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.wait(s, task.ID, "ended", ended); got.Status != StatusPartialSuccess {
		t.Fatalf("task %s %+v", got.Status, got.Progress)
	}
	res, err := s.Retry(ctx, project, task.ID, []string{"nb1", "nb2", "nosuch"})
	if err != nil || len(res) != 3 {
		t.Fatalf("retry: %+v %v", res, err)
	}
	var nf *NotFailedError
	var nfe *NotFoundError
	if !errors.As(res[0].Err, &nf) || res[1].Err != nil || !errors.As(res[2].Err, &nfe) {
		t.Fatalf("retry results %+v", res)
	}
	e.wait(s, task.ID, "the retried device processing", func(t *Task) bool {
		return t.Status == StatusProcessing && t.Progress.Processing == 1 && t.Progress.Fail == 0
	})
	again := d.deliveries()[len(first):]
	if len(again) != 1 || again[0].DeviceID != "nb2" || again[0].UpgradeID == first[0].UpgradeID || again[0].UpgradeID == first[1].UpgradeID {
		t.Fatalf("after the retry the deliverer got %+v: want a new job for nb2", again)
	}
	if err := e.reg.ReportFirmware(ctx, again[0].UpgradeID, "nb2", registry.FirmwareReport{Step: registry.StepSucceeded, State: 0, Result: 1}); err != nil {
		t.Fatal(err)
	}
	if got := e.wait(s, task.ID, "ended", ended); got.Status != StatusSuccess || got.Progress.Success != 2 || got.Progress.Total != 2 {
		t.Fatalf("after the retry: %s %+v", got.Status, got.Progress)
	}
	// Every failed item, with no targets: none left.
	if res, err := s.Retry(ctx, project, task.ID, nil); err != nil || len(res) != 0 {
		t.Fatalf("retry of a task with no failures: %+v %v", res, err)
	}

	f, err := s.UploadFile(ctx, project, "one.csv", []byte("node_id,product_id\nx1,nosuch\n"))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := s.Create(ctx, NewTask{ProjectID: project, Name: "cd", Type: TypeCreateDevices, DocumentSource: f.ID})
	if err != nil {
		t.Fatal(err)
	}
	e.wait(s, ct.ID, "ended", ended)
	if _, err := s.Retry(ctx, project, ct.ID, nil); !errors.Is(err, ErrNotRetryable) {
		t.Fatalf("retry of createDevices: %v", err)
	}
}
