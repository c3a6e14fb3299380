package test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/api"
	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/batchtask"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// TestLwM2MInteropWakaamaFirmware runs a firmware upgrade job on
// Wakaama's lwm2mclient, whose example firmware object
// (examples/client/object_firmware.c) is a stub with its own state
// machine:
//
//   - it starts in State 1 with Update Result 0, declares Update
//     Delivery Method 1 (push only) and protocols CoAP and CoAPS;
//   - a Write of /5/0/0 (Package) or /5/0/1 (Package URI) answers 2.04
//     and changes nothing: it downloads nothing;
//   - Execute /5/0/2 (Update) in State 1 answers 2.04 and sets State 2,
//     its final state (a second Execute gets 4.00); Update Result stays
//     0, and nothing is notified (it never calls
//     lwm2m_resource_value_changed).
//
// So the job pushes the package to /5/0/0 (Block1: the image is larger
// than a block), executes Update, and Wakaama's object reaches its final
// State 2. It never reports an Update Result, so the item ends in Fail
// after update_timeout, saying so; a device that does report one ends in
// Success (TestBatchFirmwareUpgrade with the Go client). The job runs
// through a firmwareUpgrade batch task, as POST /batchtasks creates it:
// the task's item for Wakaama ends Fail with that reason.
func TestLwM2MInteropWakaamaFirmware(t *testing.T) {
	t.Run("NoSec", func(t *testing.T) { wakaamaFirmware(t, wakaamaBinary(t, "WAKAAMA_CLIENT"), false) })
	t.Run("DTLS", func(t *testing.T) { wakaamaFirmware(t, wakaamaBinary(t, "WAKAAMA_CLIENT_DTLS"), true) })
}

// wakaamaFirmware runs the job on the Wakaama client bin, over DTLS-PSK
// (lwm2mclient_tinydtls) when secure.
func wakaamaFirmware(t *testing.T, bin string, secure bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := badgerkv.Open(badgerkv.Options{Dir: t.TempDir(), Queues: registry.Queues()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg, err := registry.New(registry.Options{Store: st, MasterKey: bytes.Repeat([]byte{3}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	go func() { _ = reg.Run(ctx) }()
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := lwm2m.New(lwm2m.Options{Registry: reg, Listen: "127.0.0.1:0", DTLSListen: "127.0.0.1:0", Logger: log, RequestTimeout: 10 * time.Second,
		Firmware: lwm2m.FirmwareOptions{UpdateTimeout: 3 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	}()
	reg.SetFirmwareDeliverer(srv)
	done := make(chan *registry.FirmwareItem, 2)
	reg.OnFirmwareItemDone(func(_ context.Context, _ *registry.FirmwareUpgrade, it *registry.FirmwareItem) { done <- it })
	tasks := batchtask.New(batchtask.Options{Store: st, Kinds: []batchtask.Kind{batchtask.FirmwareKind(reg)}, Describe: api.DescribeItemError,
		Logger: log, Poll: 100 * time.Millisecond})
	reg.OnFirmwareItemChange(tasks.TrackFirmware)
	reg.OnFirmwareItemDone(tasks.FirmwareItemDone)
	go tasks.Run(ctx)

	if _, err := reg.CreateProduct(ctx, registry.Product{ProjectID: "p", ProductID: "wk", Name: "Wakaama", DeviceType: "Meter", ProtocolType: "CoAP"}); err != nil {
		t.Fatal(err)
	}
	d, err := reg.CreateDevice(ctx, registry.NewDevice{ProjectID: "p", NodeID: "wakaama-fw", ProductID: "wk",
		Auth: registry.AuthInfo{Secret: pskSecret, SecureAccess: secure}})
	if err != nil {
		t.Fatal(err)
	}
	var out func() string
	if secure {
		out = startWakaama(t, nil, bin, srv.DTLSAddr().String(), "-n", "wakaama-fw", "-i", "wakaama-fw", "-s", pskSecret)
	} else {
		out = startWakaama(t, nil, bin, srv.UDPAddr().String(), "-n", "wakaama-fw")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := srv.Registration(d.DeviceID); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Wakaama did not register; its output:\n%s", out())
		}
		time.Sleep(100 * time.Millisecond)
	}
	readState := func() int64 {
		t.Helper()
		resp, err := srv.Perform(ctx, d.DeviceID, lwm2m.Operation{Name: lwm2m.OpRead, Path: format.NewPath(5, 0, 3), Accept: int(format.FormatText)})
		if err != nil {
			t.Fatalf("READ /5/0/3: %v; Wakaama:\n%s", err, out())
		}
		recs, err := format.Decode(format.FormatText, format.NewPath(5, 0, 3), resp.Payload, format.DefaultModel())
		if err != nil || len(recs) != 1 {
			t.Fatalf("READ /5/0/3: %s %q: %v", resp.Code, resp.Payload, err)
		}
		v, _ := recs[0].Value.As(format.KindInteger)
		return v.Int()
	}
	if s := readState(); s != 1 {
		t.Fatalf("Wakaama's firmware object starts in State %d, want its 1", s)
	}

	img := bytes.Repeat([]byte("wakaama firmware "), 200) // 3,400 bytes: four Block1 blocks
	pkg, err := reg.AddOTAPackage(ctx, "p", registry.OTAPackage{PackageType: registry.PackageTypeFirmware, ProductID: "wk", Version: "2.0"}, bytes.NewReader(img), "")
	if err != nil {
		t.Fatal(err)
	}
	task, err := tasks.Create(ctx, batchtask.NewTask{ProjectID: "p", Name: "wakaama_fw", Type: batchtask.TypeFirmwareUpgrade,
		Targets: []string{d.DeviceID}, Document: json.RawMessage(`{"package_ids":["` + pkg.PackageID + `"]}`)})
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		if task, err = tasks.Task(ctx, "p", task.ID); err != nil {
			t.Fatal(err)
		}
		if task.Status.Ended() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s %+v did not end; Wakaama:\n%s", task.Status, task.Progress, out())
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, items, _, _, err := tasks.Items(ctx, "p", task.ID, batchtask.ItemFilter{}, batchtask.Page{Limit: 10})
	if err != nil || len(items) != 1 {
		t.Fatalf("items %+v: %v", items, err)
	}
	ti := items[0]
	if task.Status != batchtask.StatusFail || ti.Status != batchtask.ItemFail || ti.Error == nil || ti.Error.Code != "IOTDA.014501" ||
		!strings.Contains(ti.Error.Msg, "no Update Result") {
		t.Fatalf("task %s, item %+v %+v: want Fail for want of an Update Result", task.Status, ti, ti.Error)
	}
	upgradeID, _, _ := strings.Cut(strings.TrimPrefix(ti.Output, "upgrade "), ":")
	it, err := reg.FirmwareItem(ctx, upgradeID, d.DeviceID)
	if err != nil {
		t.Fatalf("the task's job %q (output %q): %v", upgradeID, ti.Output, err)
	}
	js, _ := json.Marshal(it)
	t.Logf("item: %s", js)
	if s := readState(); s != 2 {
		t.Fatalf("Wakaama's firmware object is in State %d after the job, want its final State 2; item %s; Wakaama:\n%s", s, js, out())
	}
	if it.Status != registry.FirmwareFail || it.Step != registry.StepFailed || it.State != 2 || it.Result != 0 ||
		!strings.Contains(it.StatusDesc, "no Update Result") {
		t.Fatalf("item %s: want Fail for want of an Update Result, in State 2 with result 0", js)
	}
	select {
	case got := <-done:
		if got.DeviceID != d.DeviceID || got.Status != registry.FirmwareFail {
			t.Fatalf("done hook told of %+v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the done hook was not called")
	}
	// The item's steps are in the event stream.
	evs, err := reg.Events(ctx, "p", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, ev := range evs.Events {
		if ev.Resource == registry.ResourceDeviceUpgradeStatus {
			var b struct {
				Step string `json:"step"`
			}
			_ = json.Unmarshal(ev.Body, &b)
			steps = append(steps, b.Step)
		}
	}
	if strings.Join(steps, ",") != "downloading,downloaded,updating,failed" {
		t.Fatalf("device.upgrade.status steps %v", steps)
	}
}
