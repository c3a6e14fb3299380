package batchtask

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv"
)

// TypeFirmwareUpgrade is IoTDA's task type for firmware upgrades.
const TypeFirmwareUpgrade = "firmwareUpgrade"

// Firmware is what the firmwareUpgrade kind needs of the registry
// (*registry.Registry satisfies it).
type Firmware interface {
	OTAPackage(ctx context.Context, project, id string) (*registry.OTAPackage, error)
	Product(ctx context.Context, project, id string) (*registry.Product, error)
	StartFirmwareUpgradeWith(ctx context.Context, project string, spec registry.FirmwareUpgradeSpec,
		also func(registry.Writer, *registry.FirmwareUpgrade) error) (*registry.FirmwareUpgrade, error)
}

// FirmwareKind is the firmwareUpgrade task type over reg: each target (a
// device id) gets a firmware upgrade job of its own for the package the
// task's document names, started in the transaction that records the
// item Processing. The job's end finishes the item (Service.TrackFirmware,
// which the registry calls inside the transaction that stores each of
// the job's reports).
func FirmwareKind(reg Firmware) Kind { return firmwareUpgrade{reg} }

type firmwareUpgrade struct{ reg Firmware }

func (firmwareUpgrade) Type() string { return TypeFirmwareUpgrade }

// firmwareDocument is IoTDA's document of a firmwareUpgrade task:
// package_ids, the package (one) to install. package_id is accepted too.
type firmwareDocument struct {
	PackageIDs []string `json:"package_ids"`
	PackageID  string   `json:"package_id"`
}

// packageOf reads the package id from a task's document.
func packageOf(doc json.RawMessage) (string, error) {
	var d firmwareDocument
	if len(doc) == 0 {
		return "", &registry.ValidationError{Field: "document", Reason: `is required for firmwareUpgrade: {"package_ids": ["<package_id>"]}`}
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return "", &registry.ValidationError{Field: "document", Reason: `must be {"package_ids": ["<package_id>"]}: ` + err.Error()}
	}
	ids := d.PackageIDs
	if d.PackageID != "" {
		ids = append(ids, d.PackageID)
	}
	switch {
	case len(ids) == 0:
		return "", &registry.ValidationError{Field: "document.package_ids", Reason: "is required: the id of an uploaded firmware package"}
	case len(ids) > 1:
		return "", &registry.ValidationError{Field: "document.package_ids", Reason: "must name exactly one package: a firmware upgrade installs one image"}
	case ids[0] == "":
		return "", &registry.ValidationError{Field: "document.package_ids", Reason: "must not be empty"}
	}
	return ids[0], nil
}

// Plan checks the package (it exists, is a firmware package of an
// LwM2M product) so a bad task is refused whole, and makes an item per
// target device. Devices are checked per item: one of another product
// fails alone.
func (k firmwareUpgrade) Plan(ctx context.Context, t NewTask, sheet *Sheet) ([]NewItem, error) {
	pkgID, err := packageOf(t.Document)
	if err != nil {
		return nil, err
	}
	if len(t.Targets) == 0 {
		return nil, &registry.ValidationError{Field: "targets", Reason: "is required for firmwareUpgrade: the ids of the devices to upgrade"}
	}
	pkg, err := k.reg.OTAPackage(ctx, t.ProjectID, pkgID)
	if err != nil {
		return nil, err
	}
	if pkg.PackageType != registry.PackageTypeFirmware {
		return nil, &registry.ValidationError{Field: "document.package_ids",
			Reason: fmt.Sprintf("package %s is a %s; firmwareUpgrade needs a %s", pkg.PackageID, pkg.PackageType, registry.PackageTypeFirmware)}
	}
	prod, err := k.reg.Product(ctx, t.ProjectID, pkg.ProductID)
	if err != nil {
		return nil, err
	}
	if registry.ProtocolOf(prod) != registry.ProtocolLwM2M {
		return nil, fmt.Errorf("%w: firmwareUpgrade tasks upgrade NB-IoT (CoAP/LwM2M) devices over object 5; package %s is for product %s, which is %s",
			registry.ErrUnsupported, pkg.PackageID, prod.ProductID, prod.ProtocolType)
	}
	items := make([]NewItem, 0, len(t.Targets))
	seen := make(map[string]bool, len(t.Targets))
	for _, id := range t.Targets {
		if seen[id] {
			return nil, &registry.ValidationError{Field: "targets", Reason: fmt.Sprintf("device %s is named twice", id)}
		}
		seen[id] = true
		items = append(items, NewItem{Target: id})
	}
	return items, nil
}

// Do starts the device's job, recording the item Processing in the
// job's transaction: after a crash the item is either waiting with no
// job (tried again) or processing with its job (which the registry
// resumes), never both nor a second job.
func (k firmwareUpgrade) Do(ctx context.Context, t *Task, it *Item, rec Recorder) (Outcome, error) {
	pkgID, err := packageOf(t.Document)
	if err != nil {
		return Outcome{Status: ItemFail, Err: err}, nil
	}
	if it.Target == "" {
		return Outcome{Status: ItemFail, Err: &registry.ValidationError{Field: "targets", Reason: "a device id is empty"}}, nil
	}
	var out string
	_, err = k.reg.StartFirmwareUpgradeWith(ctx, t.ProjectID,
		registry.FirmwareUpgradeSpec{PackageID: pkgID, DeviceIDs: []string{it.Target}, TaskID: t.ID},
		func(w registry.Writer, job *registry.FirmwareUpgrade) error {
			out = firmwareOutput(job.UpgradeID, registry.StepQueued, "")
			return rec.Within(w, Outcome{Status: ItemProcessing, Output: out})
		})
	switch {
	case err == nil:
		return Outcome{Status: ItemProcessing, Output: out}, nil
	case transient(ctx, err):
		return Outcome{}, err
	}
	return Outcome{Status: ItemFail, Err: err}, nil
}

// firmwareOutput is an item's output: its job and where it stands.
func firmwareOutput(upgradeID string, step registry.FirmwareStep, desc string) string {
	s := "upgrade " + upgradeID + ": " + string(step)
	if desc != "" {
		s += ": " + desc
	}
	return s
}

// TrackFirmware records a report on a firmware item in its batch task's
// item, inside the transaction that stores the report (the registry's
// OnFirmwareItemChange hook): the step in the item's output while it
// runs, and Success or Fail (with the device's reason) when it ends. A
// report for a task that was deleted is ignored.
func (s *Service) TrackFirmware(w registry.Writer, job *registry.FirmwareUpgrade, fi *registry.FirmwareItem) error {
	o := Outcome{Status: ItemProcessing, Output: firmwareOutput(job.UpgradeID, fi.Step, fi.StatusDesc)}
	switch fi.Status {
	case registry.FirmwareSuccess:
		o.Status, o.Output = ItemSuccess, firmwareOutput(job.UpgradeID, fi.Step, "version "+job.TargetVersion+" installed")
	case registry.FirmwareFail:
		o.Status = ItemFail
		o.Err = &registry.FirmwareFailedError{DeviceID: fi.DeviceID, State: fi.State, Result: fi.Result, Desc: fi.StatusDesc}
	}
	return s.RecordItem(w, job.TaskID, fi.DeviceID, o)
}

// FirmwareItemDone wakes the runner once a firmware item's end is
// stored (the registry's OnFirmwareItemDone hook), so it ends the task
// without waiting for its poll.
func (s *Service) FirmwareItemDone(context.Context, *registry.FirmwareUpgrade, *registry.FirmwareItem) {
	s.poke()
}

// recordShards is how many counter slots RecordItem spreads its writes
// over, so concurrent reports of one task's devices rarely conflict.
const recordShards = 16

// RecordItem records, inside the caller's transaction, news of the item
// of target (its first item) that its kind left Processing: a new
// output while it stays Processing, or its end (Success or Fail). It
// changes nothing for an item that has ended, and nothing when the task
// or target is unknown (the task was deleted).
func (s *Service) RecordItem(w kv.Writer, taskID, target string, o Outcome) error {
	v, err := w.Get(targetKey(taskID, target))
	if errors.Is(err, kv.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(v) != 4 {
		return fmt.Errorf("batch task %s: corrupt target index of %q", taskID, target)
	}
	idx := int(binary.BigEndian.Uint32(v))
	it, err := getItem(w, taskID, idx)
	if errors.Is(err, kv.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case it.Status.ended():
		return nil
	case o.Status == ItemProcessing && it.Status == ItemProcessing:
		if it.Output == o.Output {
			return nil
		}
		it.Output = o.Output
		return putJSON(w, itemKey(taskID, idx), it)
	case o.Status != ItemProcessing && o.Status != ItemSuccess && o.Status != ItemFail:
		return fmt.Errorf("batch task %s: an item is recorded Processing, Success or Fail, not %s", taskID, o.Status)
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(target))
	_, err = s.setItem(w, taskID, idx, fmt.Sprintf("rec%02d", h.Sum32()%recordShards), o)
	return err
}
