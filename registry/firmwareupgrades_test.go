package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"testing"
)

func firmwareFixture(t *testing.T) (*Registry, *OTAPackage, []byte) {
	t.Helper()
	r, _ := newAsyncFixture(t) // product nb (CoAP) with device nb_n1, mq (MQTT) with mq_m1
	ctx := context.Background()
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n2", ProductID: "nb"}); err != nil {
		t.Fatal(err)
	}
	// Larger than one transaction's worth of pieces, not a multiple of a piece.
	img := bytes.Repeat([]byte("firmware-image:"), (packageChunk*chunksPerWrite+packageChunk/2)/15)
	p, err := r.AddOTAPackage(ctx, "proj", OTAPackage{PackageType: PackageTypeFirmware, ProductID: "nb", Version: "v2.0"}, bytes.NewReader(img), "")
	if err != nil {
		t.Fatal(err)
	}
	return r, p, img
}

func TestOTAPackageStoresFile(t *testing.T) {
	r, p, img := firmwareFixture(t)
	ctx := context.Background()
	sum := sha256.Sum256(img)
	if p.FileSize != int64(len(img)) || p.FileSHA256 != hex.EncodeToString(sum[:]) || p.ProjectID != "proj" {
		t.Fatalf("package %+v", p)
	}
	got, b, err := r.OTAPackageImage(ctx, "proj", p.PackageID)
	if err != nil || !bytes.Equal(b, img) || got.Version != "v2.0" {
		t.Fatalf("image: %v, %d bytes", err, len(b))
	}
	if _, _, err := r.OTAPackageImage(ctx, "other", p.PackageID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other project: %v", err)
	}
	l, err := r.OTAPackages(ctx, "proj", OTAPackageFilter{PackageType: PackageTypeFirmware, ProductID: "nb"}, Page{Limit: 10})
	if err != nil || l.Count != 1 || l.Packages[0].PackageID != p.PackageID {
		t.Fatalf("list: %v %+v", err, l)
	}
	if l, _ := r.OTAPackages(ctx, "proj", OTAPackageFilter{PackageType: PackageTypeSoftware}, Page{}); l.Count != 0 {
		t.Fatalf("software listing has %d", l.Count)
	}
	var ce *ConflictError
	if _, err := r.AddOTAPackage(ctx, "proj", OTAPackage{PackageType: PackageTypeFirmware, ProductID: "nb", Version: "v2.0"}, bytes.NewReader([]byte{1}), ""); !errors.As(err, &ce) || ce.Field != UniquePackageVersion {
		t.Fatalf("same version again: %v", err)
	}
	if err := r.DeleteOTAPackage(ctx, "proj", p.PackageID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.OTAPackage(ctx, "proj", p.PackageID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	n := 0
	_ = r.view(ctx, func(rd Reader) error {
		return rd.Scan(packageChunksPrefix(p.PackageID), nil, false, func(_, _ []byte) (bool, error) { n++; return true, nil })
	})
	if n != 0 {
		t.Fatalf("%d pieces left after delete", n)
	}
}

func TestOTAPackageRefusals(t *testing.T) {
	r, _ := newAsyncFixture(t)
	ctx := context.Background()
	ok := OTAPackage{PackageType: PackageTypeFirmware, ProductID: "nb", Version: "v1"}
	for _, tc := range []struct {
		name   string
		p      OTAPackage
		file   []byte
		sha    string
		field  string
		target error
	}{
		{"no type", OTAPackage{ProductID: "nb", Version: "v1"}, []byte{1}, "", "package_type", nil},
		{"bad type", OTAPackage{PackageType: "x", ProductID: "nb", Version: "v1"}, []byte{1}, "", "package_type", nil},
		{"no version", OTAPackage{PackageType: PackageTypeFirmware, ProductID: "nb"}, []byte{1}, "", "version", nil},
		{"space in version", OTAPackage{PackageType: PackageTypeFirmware, ProductID: "nb", Version: "v 1"}, []byte{1}, "", "version", nil},
		{"empty file", ok, nil, "", "file", nil},
		{"bad checksum syntax", ok, []byte{1}, "xyz", "sha256", nil},
		{"wrong checksum", ok, []byte{1}, hex.EncodeToString(make([]byte, 32)), "sha256", nil},
		{"unknown product", OTAPackage{PackageType: PackageTypeFirmware, ProductID: "zz", Version: "v1"}, []byte{1}, "", "", ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.AddOTAPackage(ctx, "proj", tc.p, bytes.NewReader(tc.file), tc.sha)
			var ve *ValidationError
			switch {
			case tc.field != "":
				if !errors.As(err, &ve) || ve.Field != tc.field {
					t.Fatalf("err = %v, want invalid %s", err, tc.field)
				}
			case !errors.Is(err, tc.target):
				t.Fatalf("err = %v, want %v", err, tc.target)
			}
		})
	}
	// A refused upload leaves neither a package nor pieces.
	n := 0
	_ = r.view(ctx, func(rd Reader) error {
		return rd.Scan(prefixKey(famOTAChunk), nil, false, func(_, _ []byte) (bool, error) { n++; return true, nil })
	})
	if l, _ := r.OTAPackages(ctx, "proj", OTAPackageFilter{PackageType: PackageTypeFirmware}, Page{}); l.Count != 0 || n != 0 {
		t.Fatalf("refused uploads left %d packages, %d pieces", l.Count, n)
	}
}

type recordingDeliverer struct {
	mu  sync.Mutex
	got []FirmwareDelivery
}

func (d *recordingDeliverer) DeliverFirmware(f FirmwareDelivery) {
	d.mu.Lock()
	d.got = append(d.got, f)
	d.mu.Unlock()
}

func TestFirmwareUpgradeLifecycle(t *testing.T) {
	r, p, _ := firmwareFixture(t)
	ctx := context.Background()
	d := &recordingDeliverer{}
	r.SetFirmwareDeliverer(d)
	var done []*FirmwareItem
	r.OnFirmwareItemDone(func(_ context.Context, job *FirmwareUpgrade, it *FirmwareItem) {
		if job.TaskID != "task-1" {
			t.Errorf("done hook: job %+v", job)
		}
		done = append(done, it)
	})
	job, err := r.StartFirmwareUpgrade(ctx, "proj", FirmwareUpgradeSpec{PackageID: p.PackageID, ProductID: "nb", TaskID: "task-1"})
	if err != nil {
		t.Fatal(err)
	}
	if job.Devices != 2 || len(d.got) != 2 || d.got[0].UpgradeID != job.UpgradeID {
		t.Fatalf("job %+v, delivered %+v", job, d.got)
	}
	if err := r.DeleteOTAPackage(ctx, "proj", p.PackageID); !errors.Is(err, ErrInUse) {
		t.Fatalf("delete of a package in use: %v", err)
	}
	for _, rep := range []FirmwareReport{
		{Step: StepDownloading, State: 1, Result: 0},
		{Step: StepDownloaded, State: 2, Result: -1},
		{Step: StepUpdating, State: 3, Result: -1},
		{Step: StepSucceeded, State: 0, Result: 1},
		{Step: StepFailed, State: 0, Result: 8, Desc: "late"}, // after the end: ignored
	} {
		if err := r.ReportFirmware(ctx, job.UpgradeID, "nb_n1", rep); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.ReportFirmware(ctx, job.UpgradeID, "nb_n2", FirmwareReport{Step: StepFailed, State: 0, Result: 5, Desc: "integrity check failure"}); err != nil {
		t.Fatal(err)
	}
	_, prog, err := r.FirmwareUpgrade(ctx, "proj", job.UpgradeID)
	if err != nil || prog != (FirmwareProgress{Total: 2, Success: 1, Fail: 1}) {
		t.Fatalf("progress %+v, %v", prog, err)
	}
	items, err := r.FirmwareUpgradeItems(ctx, "proj", job.UpgradeID)
	if err != nil || len(items) != 2 || items[0].Status != FirmwareSuccess || items[0].Result != 1 || items[0].State != 0 ||
		items[1].Status != FirmwareFail || items[1].StatusDesc != "integrity check failure" {
		t.Fatalf("items %+v, %v", items, err)
	}
	if len(done) != 2 {
		t.Fatalf("done hook called %d times, want once per item", len(done))
	}
	var steps []string
	for _, ev := range allEvents(t, r, "proj") {
		if ev.Resource == ResourceDeviceUpgradeStatus && ev.Header.DeviceID == "nb_n1" {
			var b upgradeEventBody
			if err := json.Unmarshal(ev.Body, &b); err != nil {
				t.Fatal(err)
			}
			steps = append(steps, string(b.Step)+"/"+string(b.Status))
		}
	}
	want := []string{"downloading/Processing", "downloaded/Processing", "updating/Processing", "succeeded/Success"}
	if len(steps) != len(want) {
		t.Fatalf("events %v, want %v", steps, want)
	}
	for i := range want {
		if steps[i] != want[i] {
			t.Fatalf("events %v, want %v", steps, want)
		}
	}
	if err := r.DeleteOTAPackage(ctx, "proj", p.PackageID); err != nil {
		t.Fatalf("delete once the job ended: %v", err)
	}
}

func TestFirmwareUpgradeRefusals(t *testing.T) {
	r, p, _ := firmwareFixture(t)
	ctx := context.Background()
	mustProduct(t, r, "proj", "nb2", "CoAP")
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "x1", ProductID: "nb2"}); err != nil {
		t.Fatal(err)
	}
	soft, err := r.AddOTAPackage(ctx, "proj", OTAPackage{PackageType: PackageTypeSoftware, ProductID: "nb", Version: "s1"}, bytes.NewReader([]byte{1}), "")
	if err != nil {
		t.Fatal(err)
	}
	mq, err := r.AddOTAPackage(ctx, "proj", OTAPackage{PackageType: PackageTypeFirmware, ProductID: "mq", Version: "m1"}, bytes.NewReader([]byte{1}), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		spec   FirmwareUpgradeSpec
		field  string
		target error
	}{
		{"no targets", FirmwareUpgradeSpec{PackageID: p.PackageID}, "targets", nil},
		{"both", FirmwareUpgradeSpec{PackageID: p.PackageID, ProductID: "nb", DeviceIDs: []string{"nb_n1"}}, "targets", nil},
		{"twice", FirmwareUpgradeSpec{PackageID: p.PackageID, DeviceIDs: []string{"nb_n1", "nb_n1"}}, "targets", nil},
		{"other product's device", FirmwareUpgradeSpec{PackageID: p.PackageID, DeviceIDs: []string{"nb2_x1"}}, "targets", nil},
		{"other product", FirmwareUpgradeSpec{PackageID: p.PackageID, ProductID: "nb2"}, "product_id", nil},
		{"software package", FirmwareUpgradeSpec{PackageID: soft.PackageID, ProductID: "nb"}, "package_id", nil},
		{"unknown device", FirmwareUpgradeSpec{PackageID: p.PackageID, DeviceIDs: []string{"nb_zz"}}, "", ErrNotFound},
		{"unknown package", FirmwareUpgradeSpec{PackageID: "nope", ProductID: "nb"}, "", ErrNotFound},
		{"MQTT product", FirmwareUpgradeSpec{PackageID: mq.PackageID, ProductID: "mq"}, "", ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.StartFirmwareUpgrade(ctx, "proj", tc.spec)
			var ve *ValidationError
			switch {
			case tc.field != "":
				if !errors.As(err, &ve) || ve.Field != tc.field {
					t.Fatalf("err = %v, want invalid %s", err, tc.field)
				}
			case !errors.Is(err, tc.target):
				t.Fatalf("err = %v, want %v", err, tc.target)
			}
		})
	}
}

func TestFirmwareUpgradeResumeAndNoDeliverer(t *testing.T) {
	r, p, _ := firmwareFixture(t)
	ctx := context.Background()
	// Without a deliverer, items fail at once, saying why.
	job, err := r.StartFirmwareUpgrade(ctx, "proj", FirmwareUpgradeSpec{PackageID: p.PackageID, DeviceIDs: []string{"nb_n1"}})
	if err != nil {
		t.Fatal(err)
	}
	if it, err := r.FirmwareItem(ctx, job.UpgradeID, "nb_n1"); err != nil || it.Status != FirmwareFail || it.StatusDesc == "" {
		t.Fatalf("item without deliverer: %+v, %v", it, err)
	}
	d := &recordingDeliverer{}
	r.SetFirmwareDeliverer(d)
	job2, err := r.StartFirmwareUpgrade(ctx, "proj", FirmwareUpgradeSpec{PackageID: p.PackageID, DeviceIDs: []string{"nb_n1", "nb_n2"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ReportFirmware(ctx, job2.UpgradeID, "nb_n1", FirmwareReport{Step: StepSucceeded, State: 0, Result: 1}); err != nil {
		t.Fatal(err)
	}
	if err := r.ReportFirmware(ctx, job2.UpgradeID, "nb_n2", FirmwareReport{Step: StepUpdating, State: 3, Result: -1}); err != nil {
		t.Fatal(err)
	}
	d.got = nil
	n, err := r.ResumeFirmwareUpgrades(ctx)
	if err != nil || n != 1 || len(d.got) != 1 || d.got[0].DeviceID != "nb_n2" || d.got[0].UpgradeID != job2.UpgradeID ||
		d.got[0].Step != StepUpdating {
		t.Fatalf("resume: %d, %v, %+v", n, err, d.got)
	}
}

// TestFirmwareUpgradeWithHooks: also runs in the job's transaction (its
// error leaves no job); the change hook runs in each report's transaction
// of a job with a task (its error leaves the item as it was), and not for
// jobs without one.
func TestFirmwareUpgradeWithHooks(t *testing.T) {
	r, p, _ := firmwareFixture(t)
	ctx := context.Background()
	d := &recordingDeliverer{}
	r.SetFirmwareDeliverer(d)
	refuse := errors.New("refused")
	if _, err := r.StartFirmwareUpgradeWith(ctx, "proj", FirmwareUpgradeSpec{PackageID: p.PackageID, DeviceIDs: []string{"nb_n1"}, TaskID: "t1"},
		func(Writer, *FirmwareUpgrade) error { return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("also's error: %v", err)
	}
	if len(d.got) != 0 {
		t.Fatalf("a refused job was delivered: %+v", d.got)
	}
	if busy, err := r.packageBusy(ctx, p.PackageID); err != nil || busy {
		t.Fatalf("a refused job was kept: %v %v", busy, err)
	}
	var seen []FirmwareStep
	var failNext bool
	r.OnFirmwareItemChange(func(w Writer, job *FirmwareUpgrade, it *FirmwareItem) error {
		if failNext {
			return refuse
		}
		seen = append(seen, it.Step)
		return w.Set([]byte("hooktest"), []byte(it.Step))
	})
	job, err := r.StartFirmwareUpgradeWith(ctx, "proj", FirmwareUpgradeSpec{PackageID: p.PackageID, DeviceIDs: []string{"nb_n1"}, TaskID: "t1"},
		func(w Writer, j *FirmwareUpgrade) error { return w.Set([]byte("alsotest"), []byte(j.UpgradeID)) })
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ReportFirmware(ctx, job.UpgradeID, "nb_n1", FirmwareReport{Step: StepDownloading, State: 1, Result: 0}); err != nil {
		t.Fatal(err)
	}
	failNext = true
	if err := r.ReportFirmware(ctx, job.UpgradeID, "nb_n1", FirmwareReport{Step: StepSucceeded, State: 0, Result: 1}); !errors.Is(err, refuse) {
		t.Fatalf("hook's error: %v", err)
	}
	if it, _ := r.FirmwareItem(ctx, job.UpgradeID, "nb_n1"); it.Step != StepDownloading {
		t.Fatalf("a report whose hook failed was kept: %+v", it)
	}
	err = r.view(ctx, func(rd Reader) error {
		a, err := rd.Get([]byte("alsotest"))
		if err != nil || string(a) != job.UpgradeID {
			return errors.New("also's write is missing")
		}
		h, err := rd.Get([]byte("hooktest"))
		if err != nil || string(h) != string(StepDownloading) {
			return errors.New("the hook's write is missing")
		}
		return nil
	})
	if err != nil || len(seen) != 1 {
		t.Fatalf("%v; hook saw %v", err, seen)
	}
	// A job without a task does not call the hook.
	failNext = false
	plain, err := r.StartFirmwareUpgrade(ctx, "proj", FirmwareUpgradeSpec{PackageID: p.PackageID, DeviceIDs: []string{"nb_n2"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ReportFirmware(ctx, plain.UpgradeID, "nb_n2", FirmwareReport{Step: StepDownloading, State: 1, Result: 0}); err != nil || len(seen) != 1 {
		t.Fatalf("%v; hook saw %v", err, seen)
	}
}

// packageBusy reports whether an unfinished job delivers package id.
func (r *Registry) packageBusy(ctx context.Context, id string) (bool, error) {
	var busy string
	err := r.view(ctx, func(rd Reader) (err error) { busy, err = packageInUse(rd, "proj", id); return err })
	return busy != "", err
}
