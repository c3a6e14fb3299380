package lwm2m_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/iotgate/iotgate/registry"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// firmwareImage is a package file of n bytes that is not a repeated
// pattern (so a block served from the wrong offset shows).
func firmwareImage(n int) []byte {
	b := make([]byte, 0, n+32)
	for i := 0; len(b) < n; i++ {
		s := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		b = append(b, s[:]...)
	}
	return b[:n]
}

// upgrade stores img as a firmware package of product nb and starts a
// job for devices.
func (f *fixture) upgrade(img []byte, version string, devices ...string) *registry.FirmwareUpgrade {
	f.t.Helper()
	ctx := context.Background()
	f.reg.SetFirmwareDeliverer(f.srv)
	p, err := f.reg.AddOTAPackage(ctx, "p", registry.OTAPackage{PackageType: registry.PackageTypeFirmware, ProductID: "nb", Version: version}, bytes.NewReader(img), "")
	if err != nil {
		f.t.Fatal(err)
	}
	job, err := f.reg.StartFirmwareUpgrade(ctx, "p", registry.FirmwareUpgradeSpec{PackageID: p.PackageID, DeviceIDs: devices})
	if err != nil {
		f.t.Fatal(err)
	}
	return job
}

func (f *fixture) item(job *registry.FirmwareUpgrade, dev string) *registry.FirmwareItem {
	f.t.Helper()
	it, err := f.reg.FirmwareItem(context.Background(), job.UpgradeID, dev)
	if err != nil {
		f.t.Fatal(err)
	}
	return it
}

func (f *fixture) waitItem(t *testing.T, job *registry.FirmwareUpgrade, dev string, want registry.FirmwareStatus) *registry.FirmwareItem {
	t.Helper()
	var it *registry.FirmwareItem
	deadline := time.Now().Add(10 * time.Second)
	for {
		if it = f.item(job, dev); it.Status == want {
			return it
		}
		if time.Now().After(deadline) || it.Status.Final() {
			t.Fatalf("item of %s is %+v, want %s", dev, it, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFirmwarePullResumesAfterReboot: a NoSec device downloads the
// Package URI with Block2, reboots after three blocks (registers again),
// resumes at the fourth block with new requests, and the update ends in
// Success with the image intact.
func TestFirmwarePullResumesAfterReboot(t *testing.T) {
	f := newFixture(t, nil)
	d := f.device("fw1", false)
	c := f.client(lwm2mclient.Config{Endpoint: "fw1"})
	fw := lwm2mclient.NewFirmware(c, 0)
	fw.SZX = 4 // 256-byte blocks
	fw.StopAfter(3)
	ctx := context.Background()
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	img := firmwareImage(3000) // 12 blocks, the last one short
	job := f.upgrade(img, "v2", d.DeviceID)
	eventually(t, "three blocks downloaded", func() bool { _, blocks := fw.Image(); return len(blocks) == 3 })
	if it := f.item(job, d.DeviceID); it.Step != registry.StepDownloading || it.Status != registry.FirmwareProcessing {
		t.Fatalf("item mid-download: %+v", it)
	}
	uri, _ := c.Value("/5/0/1")
	if !strings.HasPrefix(uri.Str(), "coap://"+f.srv.UDPAddr().String()+"/fw/") {
		t.Fatalf("Package URI %q", uri.Str())
	}
	// Another NoSec device (another address) is not served the download.
	f.device("thief", false)
	thief := f.client(lwm2mclient.Config{Endpoint: "thief"})
	if err := thief.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := thief.GetBlock(ctx, uri.Str()[strings.Index(uri.Str(), "/fw/"):], 3, 4); codeOf(err) != codes.NotFound {
		t.Fatalf("the download asked for from another address: %v, want 4.04", err)
	}
	if err := c.Register(ctx); err != nil { // the reboot
		t.Fatal(err)
	}
	fw.Resume()
	it := f.waitItem(t, job, d.DeviceID, registry.FirmwareSuccess)
	if it.Result != 1 || it.State != 0 {
		t.Fatalf("item %+v", it)
	}
	got, blocks := fw.Image()
	if !bytes.Equal(got, img) {
		t.Fatalf("downloaded %d bytes, not the image", len(got))
	}
	for i, n := range blocks {
		if n != i {
			t.Fatalf("blocks asked for %v: the resumed download started over or skipped", blocks)
		}
	}
	if len(blocks) != 12 {
		t.Fatalf("blocks %v", blocks)
	}
}

// TestFirmwareDTLSFailureResult: over DTLS the Package URI is coaps on
// the DTLS listener; an Update Result of 5 ends the item in Fail with
// its meaning. Another client asking for the download gets 4.04.
func TestFirmwareDTLSFailureResult(t *testing.T) {
	f := newFixture(t, nil)
	d := f.device("fw2", true)
	c := f.client(lwm2mclient.Config{Endpoint: "fw2", PSKIdentity: "fw2", PSK: lwm2m.PSK(secret)})
	fw := lwm2mclient.NewFirmware(c, 2)
	fw.Result = 5
	fw.StopAfter(1)
	ctx := context.Background()
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	img := firmwareImage(1500)
	job := f.upgrade(img, "v3", d.DeviceID)
	eventually(t, "the first block", func() bool { _, blocks := fw.Image(); return len(blocks) == 1 })
	uri, _ := c.Value("/5/0/1")
	if !strings.HasPrefix(uri.Str(), "coaps://"+f.srv.DTLSAddr().String()+"/fw/") {
		t.Fatalf("Package URI %q", uri.Str())
	}
	path := uri.Str()[strings.Index(uri.Str(), "/fw/"):]
	f.device("other", false)
	other := f.client(lwm2mclient.Config{Endpoint: "other"})
	if err := other.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := other.GetBlock(ctx, path, 0, 4); codeOf(err) != codes.NotFound {
		t.Fatalf("another device's download: %v, want 4.04", err)
	}
	fw.Resume()
	it := f.waitItem(t, job, d.DeviceID, registry.FirmwareFail)
	if it.Result != 5 || !strings.Contains(it.StatusDesc, "integrity check failure") {
		t.Fatalf("item %+v", it)
	}
	if got, _ := fw.Image(); !bytes.Equal(got, img) {
		t.Fatal("image differs")
	}
}

// TestFirmwareDownloadSlots: with one download slot, the second device
// waits (Waitting) while the first downloads, and starts once the first
// has its package. A queue-mode device asleep when the job starts is
// served at its next uplink.
func TestFirmwareDownloadSlots(t *testing.T) {
	f := newFixture(t, func(o *lwm2m.Options) {
		o.Firmware.MaxDownloads = 1
		o.QueueWindow = 300 * time.Millisecond
	})
	ctx := context.Background()
	d1, d2 := f.device("slot1", false), f.device("slot2", false)
	c1 := f.client(lwm2mclient.Config{Endpoint: "slot1"})
	fw1 := lwm2mclient.NewFirmware(c1, 0)
	fw1.StopAfter(1)
	c2 := f.client(lwm2mclient.Config{Endpoint: "slot2", Binding: "UQ"})
	fw2 := lwm2mclient.NewFirmware(c2, 0)
	for _, c := range []*lwm2mclient.Client{c1, c2} {
		if err := c.Register(ctx); err != nil {
			t.Fatal(err)
		}
	}
	c2.Sleep()
	time.Sleep(400 * time.Millisecond) // slot2 is past its wake window
	job := f.upgrade(firmwareImage(700), "v4", d1.DeviceID, d2.DeviceID)
	eventually(t, "slot1's first block", func() bool { _, b := fw1.Image(); return len(b) == 1 })
	c2.Wake()
	if err := c2.Update(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if it := f.item(job, d2.DeviceID); it.Status != registry.FirmwareWaiting {
		t.Fatalf("second device while the only slot is taken: %+v", it)
	}
	if v, _ := c2.Value("/5/0/1"); v.Str() != "" {
		t.Fatalf("second device was given %q while the only slot is taken", v.Str())
	}
	fw1.Resume()
	f.waitItem(t, job, d1.DeviceID, registry.FirmwareSuccess)
	// slot2 fell asleep meanwhile: its item waits for its next uplink.
	time.Sleep(400 * time.Millisecond)
	if err := c2.Update(ctx); err != nil {
		t.Fatal(err)
	}
	f.waitItem(t, job, d2.DeviceID, registry.FirmwareSuccess)
	if _, prog, _ := f.reg.FirmwareUpgrade(ctx, "p", job.UpgradeID); prog.Success != 2 {
		t.Fatalf("progress %+v", prog)
	}
	_ = fw2
}

// TestFirmwareSlotsPerTask: the download limit is each task's: a job's,
// or a batch task's, whose jobs (one a device) share its slots. With one
// slot, a device of each of two tasks downloads at once, while the two
// devices of one task download one after the other.
func TestFirmwareSlotsPerTask(t *testing.T) {
	// start starts the upgrades of a1 and a2 as one task, of b1 as
	// another, and returns each device's job.
	type starter func(f *fixture, devs map[string]string) map[string]*registry.FirmwareUpgrade
	for _, tc := range []struct {
		name  string
		start starter
	}{
		{"jobs", func(f *fixture, devs map[string]string) map[string]*registry.FirmwareUpgrade {
			a := f.upgrade(firmwareImage(700), "va", devs["a1"], devs["a2"])
			b := f.upgrade(firmwareImage(700), "vb", devs["b1"])
			return map[string]*registry.FirmwareUpgrade{"a1": a, "a2": a, "b1": b}
		}},
		{"batch tasks", func(f *fixture, devs map[string]string) map[string]*registry.FirmwareUpgrade {
			ctx := context.Background()
			f.reg.SetFirmwareDeliverer(f.srv)
			p, err := f.reg.AddOTAPackage(ctx, "p", registry.OTAPackage{PackageType: registry.PackageTypeFirmware, ProductID: "nb", Version: "vt"},
				bytes.NewReader(firmwareImage(700)), "")
			if err != nil {
				t.Fatal(err)
			}
			jobs := map[string]*registry.FirmwareUpgrade{}
			for node, task := range map[string]string{"a1": "task-a", "a2": "task-a", "b1": "task-b"} {
				job, err := f.reg.StartFirmwareUpgrade(ctx, "p", registry.FirmwareUpgradeSpec{PackageID: p.PackageID, DeviceIDs: []string{devs[node]}, TaskID: task})
				if err != nil {
					t.Fatal(err)
				}
				jobs[node] = job
			}
			return jobs
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(o *lwm2m.Options) { o.Firmware.MaxDownloads = 1 })
			ctx := context.Background()
			ids := map[string]string{}
			clients := map[string]*lwm2mclient.Client{}
			fws := map[string]*lwm2mclient.Firmware{}
			for _, node := range []string{"a1", "a2", "b1"} {
				ids[node] = f.device(node, false).DeviceID
				c := f.client(lwm2mclient.Config{Endpoint: node})
				fws[node] = lwm2mclient.NewFirmware(c, 0)
				fws[node].StopAfter(1) // each holds its slot until resumed
				if err := c.Register(ctx); err != nil {
					t.Fatal(err)
				}
				clients[node] = c
			}
			blocks := func(node string) int { _, b := fws[node].Image(); return len(b) }
			jobs := tc.start(f, ids)
			eventually(t, "a device of each task downloading", func() bool { return blocks("b1") == 1 && blocks("a1")+blocks("a2") == 1 })
			first, second := "a1", "a2"
			if blocks("a2") == 1 {
				first, second = second, first
			}
			time.Sleep(1200 * time.Millisecond) // past a sweep, which offers free slots
			if it := f.item(jobs[second], ids[second]); it.Status != registry.FirmwareWaiting || blocks(second) != 0 {
				t.Fatalf("%s while %s of its task holds the only slot: %+v, %d blocks", second, first, it, blocks(second))
			}
			if v, _ := clients[second].Value("/5/0/1"); v.Str() != "" {
				t.Fatalf("%s was given %q while %s of its task holds the only slot", second, v.Str(), first)
			}
			fws[first].Resume()
			eventually(t, second+" downloading once "+first+" has its package", func() bool { return blocks(second) == 1 })
			switch it := f.item(jobs[first], ids[first]); it.Step {
			case registry.StepDownloaded, registry.StepUpdating, registry.StepSucceeded:
			default:
				t.Fatalf("%s downloads while %s is %+v", second, first, it)
			}
			fws[second].Resume()
			fws["b1"].Resume()
			for node, id := range ids {
				f.waitItem(t, jobs[node], id, registry.FirmwareSuccess)
				if got, _ := fws[node].Image(); len(got) != 700 {
					t.Fatalf("%s downloaded %d bytes", node, len(got))
				}
			}
		})
	}
}

// TestFirmwarePushOnly: a device that declares push delivery only gets
// the package written to /5/0/0 (Block1 for an image larger than a
// block).
func TestFirmwarePushOnly(t *testing.T) {
	f := newFixture(t, nil)
	d := f.device("push", false)
	c := f.client(lwm2mclient.Config{Endpoint: "push"})
	fw := lwm2mclient.NewFirmware(c, 1)
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	img := firmwareImage(900)
	job := f.upgrade(img, "v5", d.DeviceID)
	f.waitItem(t, job, d.DeviceID, registry.FirmwareSuccess)
	if got, blocks := fw.Image(); !bytes.Equal(got, img) || len(blocks) != 0 {
		t.Fatalf("pushed image %d bytes (blocks pulled %v)", len(got), blocks)
	}
}

type heldDeliverer struct{}

func (heldDeliverer) DeliverFirmware(registry.FirmwareDelivery) {}

// TestFirmwareResumedUpdateIsNotDeliveredAgain: an item that was
// updating when the server stopped is handed back (as
// registry.ResumeFirmwareUpgrades does) and waits for the device's
// result: the package is not written again.
func TestFirmwareResumedUpdateIsNotDeliveredAgain(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	d := f.device("resumed", false)
	c := f.client(lwm2mclient.Config{Endpoint: "resumed"})
	lwm2mclient.NewFirmware(c, 0)
	_ = c.Set("/5/0/5", formatInt(1)) // it rebooted into the new firmware meanwhile
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	f.reg.SetFirmwareDeliverer(heldDeliverer{})
	p, err := f.reg.AddOTAPackage(ctx, "p", registry.OTAPackage{PackageType: registry.PackageTypeFirmware, ProductID: "nb", Version: "v9"}, bytes.NewReader([]byte{1, 2, 3}), "")
	if err != nil {
		t.Fatal(err)
	}
	job, err := f.reg.StartFirmwareUpgrade(ctx, "p", registry.FirmwareUpgradeSpec{PackageID: p.PackageID, DeviceIDs: []string{d.DeviceID}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.reg.ReportFirmware(ctx, job.UpgradeID, d.DeviceID, registry.FirmwareReport{Step: registry.StepUpdating, State: 3, Result: -1}); err != nil {
		t.Fatal(err)
	}
	f.srv.DeliverFirmware(registry.FirmwareDelivery{UpgradeID: job.UpgradeID, ProjectID: "p", PackageID: p.PackageID, DeviceID: d.DeviceID, Step: registry.StepUpdating})
	f.waitItem(t, job, d.DeviceID, registry.FirmwareSuccess)
	if v, _ := c.Value("/5/0/1"); v.Str() != "" {
		t.Fatalf("the package was delivered again: Package URI %q", v.Str())
	}
}

// ignoreDeliveries takes firmware items and does nothing: the process
// that stopped before delivering them.
type ignoreDeliveries struct{}

func (ignoreDeliveries) DeliverFirmware(registry.FirmwareDelivery) {}

// TestFirmwareResumeByState: items handed back at start-up
// (ResumeFirmwareUpgrades) go on from their device's State. A device that
// holds the package (State 2) is not sent it again: it is told to
// Update. One still downloading from the stopped process's URI (State 1)
// gets a new Package URI and downloads the image.
func TestFirmwareResumeByState(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	img := firmwareImage(1000)
	type dev struct {
		id string
		c  *lwm2mclient.Client
		fw *lwm2mclient.Firmware
	}
	var devs []dev
	for _, node := range []string{"has", "half"} {
		d := f.device(node, false)
		c := f.client(lwm2mclient.Config{Endpoint: node})
		fw := lwm2mclient.NewFirmware(c, 0)
		if err := c.Register(ctx); err != nil {
			t.Fatal(err)
		}
		devs = append(devs, dev{d.DeviceID, c, fw})
	}
	// The stopped process had got "has" to Downloaded and "half" to
	// Downloading, and stopped before executing the Update.
	p, err := f.reg.AddOTAPackage(ctx, "p", registry.OTAPackage{PackageType: registry.PackageTypeFirmware, ProductID: "nb", Version: "v3"}, bytes.NewReader(img), "")
	if err != nil {
		t.Fatal(err)
	}
	f.reg.SetFirmwareDeliverer(ignoreDeliveries{})
	job, err := f.reg.StartFirmwareUpgrade(ctx, "p", registry.FirmwareUpgradeSpec{PackageID: p.PackageID, DeviceIDs: []string{devs[0].id, devs[1].id}})
	if err != nil {
		t.Fatal(err)
	}
	for i, step := range []registry.FirmwareStep{registry.StepDownloaded, registry.StepDownloading} {
		if err := f.reg.ReportFirmware(ctx, job.UpgradeID, devs[i].id, registry.FirmwareReport{Step: step, State: 2 - i, Result: 0}); err != nil {
			t.Fatal(err)
		}
	}
	_ = devs[0].c.Set("/5/0/3", format.IntegerValue(2))
	_ = devs[1].c.Set("/5/0/1", format.StringValue("coap://127.0.0.1:1/fw/gone"))
	_ = devs[1].c.Set("/5/0/3", format.IntegerValue(1))

	f.reg.SetFirmwareDeliverer(f.srv)
	if n, err := f.reg.ResumeFirmwareUpgrades(ctx); err != nil || n != 2 {
		t.Fatalf("resumed %d: %v", n, err)
	}
	for _, d := range devs {
		if it := f.waitItem(t, job, d.id, registry.FirmwareSuccess); it.Result != 1 {
			t.Fatalf("%s: %+v", d.id, it)
		}
	}
	if got, blocks := devs[0].fw.Image(); len(blocks) != 0 || len(got) != 0 {
		t.Fatalf("the device holding the package was sent it again: %d blocks", len(blocks))
	}
	if uri, _ := devs[0].c.Value("/5/0/1"); uri.Str() != "" {
		t.Fatalf("the device holding the package got a Package URI %q", uri.Str())
	}
	if got, _ := devs[1].fw.Image(); !bytes.Equal(got, img) {
		t.Fatalf("the device that was downloading got %d bytes, not the image", len(got))
	}
}
