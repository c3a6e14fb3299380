package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// Firmware upgrades: a job that delivers a firmware package to a list of
// devices (or every device of a product) and follows each device to its
// outcome. The registry keeps the job and one item per device, durably;
// a protocol adapter (FirmwareDeliverer, the LwM2M listener's object-5
// procedure) moves items along and reports each step, which is stored
// and recorded as a device.upgrade.status event. A batch-task layer
// (IoTDA's task_type firmwareUpgrade) starts jobs with
// StartFirmwareUpgrade and learns of each item's end through
// OnFirmwareItemDone.

// MaxUpgradeDevices bounds the devices of one job.
const MaxUpgradeDevices = 10000

// FirmwareStatus is an item's status, with the names of IoTDA's batch
// task details (including its spelling "Waitting").
type FirmwareStatus string

// Item statuses.
const (
	FirmwareWaiting    FirmwareStatus = "Waitting"
	FirmwareProcessing FirmwareStatus = "Processing"
	FirmwareSuccess    FirmwareStatus = "Success"
	FirmwareFail       FirmwareStatus = "Fail"
)

// Final reports whether an item in s is done.
func (s FirmwareStatus) Final() bool { return s == FirmwareSuccess || s == FirmwareFail }

// FirmwareStep is where an item's procedure stands.
type FirmwareStep string

// The steps an adapter reports; Succeeded and Failed end the item.
const (
	StepQueued      FirmwareStep = "queued"      // waits for the device, or for a download slot
	StepDownloading FirmwareStep = "downloading" // the device fetches (or is sent) the package
	StepDownloaded  FirmwareStep = "downloaded"  // the device holds the package
	StepUpdating    FirmwareStep = "updating"    // the device was told to install it
	StepSucceeded   FirmwareStep = "succeeded"
	StepFailed      FirmwareStep = "failed"
)

func (s FirmwareStep) status() FirmwareStatus {
	switch s {
	case StepQueued:
		return FirmwareWaiting
	case StepSucceeded:
		return FirmwareSuccess
	case StepFailed:
		return FirmwareFail
	}
	return FirmwareProcessing
}

// FirmwareUpgrade is a job.
type FirmwareUpgrade struct {
	UpgradeID     string `json:"upgrade_id"`
	ProjectID     string `json:"app_id"`
	PackageID     string `json:"package_id"`
	ProductID     string `json:"product_id"`
	TargetVersion string `json:"target_version"`
	// TaskID is the batch task that started the job, if any.
	TaskID  string    `json:"task_id,omitempty"`
	Devices int       `json:"devices"`
	Created time.Time `json:"created"`
}

// FirmwareItem is one device's part of a job.
type FirmwareItem struct {
	UpgradeID string         `json:"upgrade_id"`
	DeviceID  string         `json:"device_id"`
	Status    FirmwareStatus `json:"status"`
	Step      FirmwareStep   `json:"step"`
	// State and Result are the device's last object-5 State (/5/0/3) and
	// Update Result (/5/0/5), -1 when not yet read.
	State      int       `json:"state"`
	Result     int       `json:"result"`
	StatusDesc string    `json:"status_desc,omitempty"`
	Updated    time.Time `json:"updated"`
}

// FirmwareProgress counts a job's items by status (IoTDA's TaskProgress).
type FirmwareProgress struct {
	Total      int `json:"total"`
	Waitting   int `json:"waitting"`
	Processing int `json:"processing"`
	Success    int `json:"success"`
	Fail       int `json:"fail"`
}

// FirmwareUpgradeSpec says what a job delivers to whom: DeviceIDs, or
// every device of ProductID (the package's product).
type FirmwareUpgradeSpec struct {
	PackageID string
	DeviceIDs []string
	ProductID string
	TaskID    string
}

// FirmwareReport is an adapter's news of an item. State and Result are
// -1 when unknown (the item keeps its last values).
type FirmwareReport struct {
	Step          FirmwareStep
	State, Result int
	Desc          string
}

// FirmwareDelivery is an item handed to the adapter. Step is where a
// resumed item stood (StepQueued for a new one): an item that was
// updating waits for its result rather than deliver the package again.
type FirmwareDelivery struct {
	UpgradeID, ProjectID, PackageID, DeviceID string
	// TaskID is the batch task that started the job, if any.
	TaskID string
	Step   FirmwareStep
}

// SlotGroup names the download slots the item counts against
// (AcquireFirmwareSlot): its batch task's when a batch task started its
// job (the task gives each device a job of its own, and the limit is the
// task's), else its job's.
func (d FirmwareDelivery) SlotGroup() string {
	if d.TaskID != "" {
		return "t:" + d.TaskID
	}
	return "u:" + d.UpgradeID
}

// delivery is the job's item for device at step, as an adapter gets it.
func (j *FirmwareUpgrade) delivery(device string, step FirmwareStep) FirmwareDelivery {
	return FirmwareDelivery{UpgradeID: j.UpgradeID, ProjectID: j.ProjectID, PackageID: j.PackageID,
		DeviceID: device, TaskID: j.TaskID, Step: step}
}

// FirmwareDeliverer carries items to devices. DeliverFirmware must not
// block: it queues the item, and reports its steps through
// ReportFirmware.
type FirmwareDeliverer interface {
	DeliverFirmware(d FirmwareDelivery)
}

// firmwareHooks are the adapter items go to and the callbacks told of
// items' ends.
type firmwareHooks struct {
	mu        sync.RWMutex
	deliverer FirmwareDeliverer
	done      []func(ctx context.Context, job *FirmwareUpgrade, item *FirmwareItem)
	changed   []func(w Writer, job *FirmwareUpgrade, item *FirmwareItem) error
}

// SetFirmwareDeliverer names the adapter that delivers firmware items.
func (r *Registry) SetFirmwareDeliverer(d FirmwareDeliverer) {
	r.fw.mu.Lock()
	r.fw.deliverer = d
	r.fw.mu.Unlock()
}

// OnFirmwareItemDone adds fn, called once per item after its final
// status (Success or Fail) is stored: the hook a batch-task layer uses to
// finish the task's item. fn runs on the reporter's goroutine and should
// not block long.
func (r *Registry) OnFirmwareItemDone(fn func(ctx context.Context, job *FirmwareUpgrade, item *FirmwareItem)) {
	r.fw.mu.Lock()
	r.fw.done = append(r.fw.done, fn)
	r.fw.mu.Unlock()
}

// OnFirmwareItemChange adds fn, called inside the transaction that
// stores each report on an item of a job started by a batch task (TaskID
// set): the batch task records the item's progress and outcome in that
// transaction, so a crash can never leave the two apart. fn may run more
// than once (see write); its error fails the report.
func (r *Registry) OnFirmwareItemChange(fn func(w Writer, job *FirmwareUpgrade, item *FirmwareItem) error) {
	r.fw.mu.Lock()
	r.fw.changed = append(r.fw.changed, fn)
	r.fw.mu.Unlock()
}

func upgradeKey(project, id string) []byte    { return key(famFwUpgrade, project, id) }
func upgradeItemsPrefix(id string) []byte     { return prefixKey(famFwItem, id) }
func upgradeItemKey(id, device string) []byte { return key(famFwItem, id, device) }

// StartFirmwareUpgrade creates a job delivering a firmware package of
// project and hands its items to the deliverer. Every device must be of
// the package's product, which must be an LwM2M (CoAP) one.
func (r *Registry) StartFirmwareUpgrade(ctx context.Context, project string, spec FirmwareUpgradeSpec) (*FirmwareUpgrade, error) {
	return r.StartFirmwareUpgradeWith(ctx, project, spec, nil)
}

// StartFirmwareUpgradeWith is StartFirmwareUpgrade that also runs also,
// when not nil, in the transaction that creates the job (a batch task
// records its item Processing this way, so a crash never leaves a job
// without its item's record, nor a second job started for the item). An
// error from also refuses the job and is returned unchanged.
func (r *Registry) StartFirmwareUpgradeWith(ctx context.Context, project string, spec FirmwareUpgradeSpec,
	also func(Writer, *FirmwareUpgrade) error) (*FirmwareUpgrade, error) {
	pkg, err := r.OTAPackage(ctx, project, spec.PackageID)
	if err != nil {
		return nil, err
	}
	if pkg.PackageType != PackageTypeFirmware {
		return nil, invalid("package_id", "package %s is a %s; a firmware upgrade needs a firmwarePackage", pkg.PackageID, pkg.PackageType)
	}
	prod, err := r.Product(ctx, project, pkg.ProductID)
	if err != nil {
		return nil, err
	}
	if ProtocolOf(prod) != ProtocolLwM2M {
		return nil, fmt.Errorf("%w: firmware upgrades (LwM2M object 5) are for NB-IoT (CoAP/LwM2M) products; product %s is %s", ErrUnsupported, prod.ProductID, prod.ProtocolType)
	}
	devices, err := r.upgradeTargets(ctx, project, pkg, spec)
	if err != nil {
		return nil, err
	}
	now := r.now().UTC()
	job := &FirmwareUpgrade{UpgradeID: r.ids.Next(now), ProjectID: project, PackageID: pkg.PackageID, ProductID: pkg.ProductID,
		TargetVersion: pkg.Version, TaskID: spec.TaskID, Devices: len(devices), Created: now}
	err = r.write(ctx, func(w Writer) error {
		b, err := json.Marshal(job)
		if err != nil {
			return err
		}
		if err := w.Set(upgradeKey(project, job.UpgradeID), b); err != nil {
			return err
		}
		for _, d := range devices {
			it := FirmwareItem{UpgradeID: job.UpgradeID, DeviceID: d, Status: FirmwareWaiting, Step: StepQueued, State: -1, Result: -1, Updated: now}
			if err := putItem(w, &it); err != nil {
				return err
			}
		}
		if also != nil {
			return also(w, job)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.deliverItems(ctx, job, devices)
	return job, nil
}

// upgradeTargets returns the devices of spec, checked.
func (r *Registry) upgradeTargets(ctx context.Context, project string, pkg *OTAPackage, spec FirmwareUpgradeSpec) ([]string, error) {
	switch {
	case spec.ProductID != "" && len(spec.DeviceIDs) > 0:
		return nil, invalid("targets", "give devices or a product, not both")
	case spec.ProductID != "":
		if spec.ProductID != pkg.ProductID {
			return nil, invalid("product_id", "package %s is for product %s, not %s", pkg.PackageID, pkg.ProductID, spec.ProductID)
		}
		var out []string
		marker := ""
		for {
			l, err := r.ListDevices(ctx, project, DeviceFilter{ProductID: spec.ProductID}, Page{Limit: 1000, Marker: marker})
			if err != nil {
				return nil, err
			}
			for _, d := range l.Devices {
				out = append(out, d.DeviceID)
			}
			if len(out) > MaxUpgradeDevices {
				return nil, fmt.Errorf("%w: a firmware upgrade has at most %d devices; product %s has more", ErrQuota, MaxUpgradeDevices, spec.ProductID)
			}
			if len(l.Devices) < 1000 {
				break
			}
			marker = l.Marker
		}
		if len(out) == 0 {
			return nil, invalid("product_id", "product %s has no devices", spec.ProductID)
		}
		return out, nil
	case len(spec.DeviceIDs) == 0:
		return nil, invalid("targets", "name at least one device, or a product")
	case len(spec.DeviceIDs) > MaxUpgradeDevices:
		return nil, invalid("targets", "at most %d devices", MaxUpgradeDevices)
	}
	seen := make(map[string]bool, len(spec.DeviceIDs))
	for _, id := range spec.DeviceIDs {
		if seen[id] {
			return nil, invalid("targets", "device %s is named twice", id)
		}
		seen[id] = true
		d, err := r.Device(ctx, id)
		if err == nil && d.ProjectID != project {
			err = &NotFoundError{Kind: EntityDevice, ID: id}
		}
		if err != nil {
			return nil, err
		}
		if d.ProductID != pkg.ProductID {
			return nil, invalid("targets", "device %s is of product %s; package %s is for product %s", id, d.ProductID, pkg.PackageID, pkg.ProductID)
		}
	}
	return spec.DeviceIDs, nil
}

// deliverItems hands items to the deliverer; without one they fail.
func (r *Registry) deliverItems(ctx context.Context, job *FirmwareUpgrade, devices []string) {
	r.fw.mu.RLock()
	d := r.fw.deliverer
	r.fw.mu.RUnlock()
	for _, dev := range devices {
		if d == nil {
			if err := r.ReportFirmware(ctx, job.UpgradeID, dev, FirmwareReport{Step: StepFailed, State: -1, Result: -1,
				Desc: "no LwM2M listener on this node delivers firmware"}); err != nil {
				r.log.Warn("failing a firmware item", "upgrade_id", job.UpgradeID, "device_id", dev, "err", err)
			}
			continue
		}
		d.DeliverFirmware(job.delivery(dev, StepQueued))
	}
}

func putItem(w Writer, it *FirmwareItem) error {
	b, err := json.Marshal(it)
	if err != nil {
		return err
	}
	return w.Set(upgradeItemKey(it.UpgradeID, it.DeviceID), b)
}

func getItem(rd Reader, upgrade, device string) (*FirmwareItem, error) {
	b, err := rd.Get(upgradeItemKey(upgrade, device))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, &NotFoundError{Kind: EntityFirmwareUpgrade, ID: upgrade + "/" + device}
	}
	if err != nil {
		return nil, err
	}
	var it FirmwareItem
	if err := json.Unmarshal(b, &it); err != nil {
		return nil, fmt.Errorf("decode firmware item %s/%s: %w", upgrade, device, err)
	}
	return &it, nil
}

// upgradeEventBody is the body of a device.upgrade.status event.
type upgradeEventBody struct {
	UpgradeID     string         `json:"upgrade_id"`
	TaskID        string         `json:"task_id,omitempty"`
	PackageID     string         `json:"package_id"`
	TargetVersion string         `json:"target_version"`
	Status        FirmwareStatus `json:"status"`
	Step          FirmwareStep   `json:"step"`
	State         int            `json:"state"`
	Result        int            `json:"result"`
	StatusDesc    string         `json:"status_desc,omitempty"`
	EventTime     string         `json:"event_time"`
}

// ReportFirmware records an adapter's news of an item: its step and the
// device's object-5 values, stored with a device.upgrade.status event. A
// report on a finished item changes nothing (a late notification).
func (r *Registry) ReportFirmware(ctx context.Context, upgradeID, deviceID string, rep FirmwareReport) error {
	var job *FirmwareUpgrade
	var done *FirmwareItem
	err := r.write(ctx, func(w Writer) error {
		done = nil
		it, err := getItem(w, upgradeID, deviceID)
		if err != nil {
			return err
		}
		if it.Status.Final() {
			return nil
		}
		d, ok, err := r.eventDevice(w, deviceID)
		if err != nil {
			return err
		}
		if job, err = r.upgradeByID(w, d, upgradeID); err != nil {
			return err
		}
		now := r.now().UTC()
		it.Step, it.Status, it.StatusDesc, it.Updated = rep.Step, rep.Step.status(), rep.Desc, now
		if rep.State >= 0 {
			it.State = rep.State
		}
		if rep.Result >= 0 {
			it.Result = rep.Result
		}
		if err := putItem(w, it); err != nil {
			return err
		}
		if job.TaskID != "" {
			r.fw.mu.RLock()
			changed := r.fw.changed
			r.fw.mu.RUnlock()
			for _, fn := range changed {
				if err := fn(w, job, it); err != nil {
					return fmt.Errorf("firmware upgrade %s: recording device %s in batch task %s: %w", upgradeID, deviceID, job.TaskID, err)
				}
			}
		}
		if it.Status.Final() {
			done = it
		}
		if !ok {
			return nil // the device was deleted: no event about it
		}
		ev, err := encodeDeviceEvent(d, ResourceDeviceUpgradeStatus, EventUpdate, now, upgradeEventBody{
			UpgradeID: upgradeID, TaskID: job.TaskID, PackageID: job.PackageID, TargetVersion: job.TargetVersion,
			Status: it.Status, Step: it.Step, State: it.State, Result: it.Result, StatusDesc: it.StatusDesc,
			EventTime: now.Format(isoMillis)})
		if err != nil {
			return err
		}
		return r.appendEncoded(w, ev)
	})
	if err != nil || done == nil {
		return err
	}
	r.fw.mu.RLock()
	hooks := r.fw.done
	r.fw.mu.RUnlock()
	for _, fn := range hooks {
		fn(ctx, job, done)
	}
	return nil
}

// upgradeByID reads a job by id; the project comes from its device (or,
// for a deleted device, from a scan of the projects' jobs).
func (r *Registry) upgradeByID(rd Reader, d *Device, id string) (*FirmwareUpgrade, error) {
	if d != nil {
		return getUpgrade(rd, d.ProjectID, id)
	}
	jobs, err := scanUpgrades(rd, prefixKey(famFwUpgrade))
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		if j.UpgradeID == id {
			return j, nil
		}
	}
	return nil, &NotFoundError{Kind: EntityFirmwareUpgrade, ID: id}
}

func getUpgrade(rd Reader, project, id string) (*FirmwareUpgrade, error) {
	b, err := rd.Get(upgradeKey(project, id))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, &NotFoundError{Kind: EntityFirmwareUpgrade, ID: id}
	}
	if err != nil {
		return nil, err
	}
	var j FirmwareUpgrade
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("decode firmware upgrade %s: %w", id, err)
	}
	return &j, nil
}

// FirmwareUpgrade returns a job of project with its items' counts.
func (r *Registry) FirmwareUpgrade(ctx context.Context, project, id string) (*FirmwareUpgrade, FirmwareProgress, error) {
	var job *FirmwareUpgrade
	var p FirmwareProgress
	err := r.view(ctx, func(rd Reader) error {
		var err error
		if job, err = getUpgrade(rd, project, id); err != nil {
			return err
		}
		return scanItems(rd, id, func(it *FirmwareItem) {
			p.Total++
			switch it.Status {
			case FirmwareWaiting:
				p.Waitting++
			case FirmwareProcessing:
				p.Processing++
			case FirmwareSuccess:
				p.Success++
			case FirmwareFail:
				p.Fail++
			}
		})
	})
	return job, p, err
}

// FirmwareUpgradeItems returns a job's items, by device id.
func (r *Registry) FirmwareUpgradeItems(ctx context.Context, project, id string) ([]*FirmwareItem, error) {
	var out []*FirmwareItem
	err := r.view(ctx, func(rd Reader) error {
		if _, err := getUpgrade(rd, project, id); err != nil {
			return err
		}
		return scanItems(rd, id, func(it *FirmwareItem) { out = append(out, it) })
	})
	return out, err
}

// FirmwareItem returns one device's item of a job (the adapter's view:
// any project).
func (r *Registry) FirmwareItem(ctx context.Context, upgradeID, deviceID string) (*FirmwareItem, error) {
	var it *FirmwareItem
	err := r.view(ctx, func(rd Reader) (err error) {
		it, err = getItem(rd, upgradeID, deviceID)
		return err
	})
	return it, err
}

func scanItems(rd Reader, id string, fn func(*FirmwareItem)) error {
	return rd.Scan(upgradeItemsPrefix(id), nil, false, func(_, v []byte) (bool, error) {
		var it FirmwareItem
		if err := json.Unmarshal(v, &it); err != nil {
			return false, fmt.Errorf("decode firmware item: %w", err)
		}
		fn(&it)
		return true, nil
	})
}

// ResumeFirmwareUpgrades hands every unfinished item to the deliverer
// again (at start-up: the adapter's progress lives in memory) and
// returns how many it handed.
func (r *Registry) ResumeFirmwareUpgrades(ctx context.Context) (int, error) {
	var open []FirmwareDelivery
	err := r.view(ctx, func(rd Reader) error {
		jobs, err := scanUpgrades(rd, prefixKey(famFwUpgrade))
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if err := scanItems(rd, j.UpgradeID, func(it *FirmwareItem) {
				if !it.Status.Final() {
					open = append(open, j.delivery(it.DeviceID, it.Step))
				}
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	r.fw.mu.RLock()
	d := r.fw.deliverer
	r.fw.mu.RUnlock()
	if d == nil {
		return 0, nil
	}
	for _, o := range open {
		d.DeliverFirmware(o)
	}
	return len(open), nil
}

// packageInUse returns the id of an unfinished job of project that
// delivers package id, "" if none. (Scans one after the other: a
// read-write transaction holds one iterator at a time.)
func packageInUse(rd Reader, project, id string) (string, error) {
	jobs, err := scanUpgrades(rd, prefixKey(famFwUpgrade, project))
	if err != nil {
		return "", err
	}
	for _, j := range jobs {
		if j.PackageID != id {
			continue
		}
		busy := false
		if err := scanItems(rd, j.UpgradeID, func(it *FirmwareItem) { busy = busy || !it.Status.Final() }); err != nil {
			return "", err
		}
		if busy {
			return j.UpgradeID, nil
		}
	}
	return "", nil
}

// scanUpgrades reads the jobs under prefix.
func scanUpgrades(rd Reader, prefix []byte) ([]*FirmwareUpgrade, error) {
	var out []*FirmwareUpgrade
	err := rd.Scan(prefix, nil, false, func(_, v []byte) (bool, error) {
		var j FirmwareUpgrade
		if err := json.Unmarshal(v, &j); err != nil {
			return false, fmt.Errorf("decode firmware upgrade: %w", err)
		}
		out = append(out, &j)
		return true, nil
	})
	return out, err
}

// FirmwareFailedError is why a device's item ended in Fail, as its
// adapter reported it (an Update Result, a refused request, a timeout).
type FirmwareFailedError struct {
	DeviceID string
	// State and Result are the device's last object-5 State and Update
	// Result, -1 when never read.
	State, Result int
	Desc          string
}

func (e *FirmwareFailedError) Error() string {
	return fmt.Sprintf("firmware upgrade of device %s failed: %s (State %d, Update Result %d)", e.DeviceID, e.Desc, e.State, e.Result)
}
