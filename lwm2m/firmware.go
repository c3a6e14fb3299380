package lwm2m

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/registry"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// Firmware update (LwM2M object 5): the server's side of a firmware
// upgrade job's item (registry.FirmwareDeliverer). Per device:
//
//  1. When the device is awake and its task has a free download slot
//     (MaxDownloads a batch task, or a job started without one, counted
//     across every node sharing the registry's store:
//     registry.AcquireFirmwareSlot), read /5/0/9 (Update Delivery
//     Method) and observe /5/0/3 (State) and /5/0/5 (Update Result).
//  2. Pull (the device supports it, or says nothing): read /5/0/8
//     (Firmware Update Protocol Support) and write /5/0/1 (Package URI)
//     with coap(s)://host:port/fw/{token}, a resource of this server
//     that serves the image with Block2 (firmwareserve.go), or, for a
//     device that downloads by HTTP(S) only, {http_url}/fw/{token},
//     served by FirmwareHTTP on the API listeners (firmwarehttp.go;
//     pullScheme decides); the device downloads and its State goes
//     1 (Downloading), then 2 (Downloaded). Push (the device declares
//     push only, as Wakaama's example client does): write the image to
//     /5/0/0 (Package) with Block1; its 2.04 means the device holds the
//     whole package.
//  3. Once downloaded, execute /5/0/2 (Update); State 3 (Updating).
//  4. Update Result 1 ends the item in Success; a result of 2 to 9 (or
//     a refused request, or a timeout) in Fail, with the reason.
//
// Progress comes from notifications, and from a read of State and
// Update Result at each uplink of a device whose item waits (a lost
// notification, a registration replaced after the device rebooted into
// its new firmware). A queue-mode device is served only while awake: its
// item waits for its next uplink. Items live in memory; the registry
// keeps their steps, and hands unfinished ones back at start-up
// (registry.ResumeFirmwareUpgrades).

// FirmwareRegistry is what firmware delivery needs of the registry; a
// *registry.Registry satisfies it. Without it (Options.Registry lacks
// it), every item fails.
type FirmwareRegistry interface {
	OTAPackageImage(ctx context.Context, project, id string) (*registry.OTAPackage, []byte, error)
	ReportFirmware(ctx context.Context, upgradeID, deviceID string, rep registry.FirmwareReport) error
	// AcquireFirmwareSlot and ReleaseFirmwareSlot keep a task's download
	// slots in the store the nodes share, so the limit holds for the task
	// across the cluster.
	AcquireFirmwareSlot(ctx context.Context, d registry.FirmwareDelivery, limit int, ttl time.Duration) (bool, error)
	ReleaseFirmwareSlot(ctx context.Context, d registry.FirmwareDelivery) error
}

// FirmwareOptions configures firmware delivery; zero fields take the
// defaults below.
type FirmwareOptions struct {
	// MaxDownloads bounds the devices of one firmware upgrade task (a
	// batch task, or a job started without one: FirmwareDelivery.SlotGroup)
	// downloading at once (from the Package URI write, or the push, until
	// State 2 or the item's end), counted across every node sharing the
	// registry's store; other tasks have their own.
	MaxDownloads int
	// Host is the host of the Package URIs (the address devices reach
	// this server at); "" takes the CoAP listener's host when it is not
	// unspecified (0.0.0.0, ::).
	Host string
	// HTTPURL is the base URL of the API listener as devices reach it
	// (http or https, no query): a device that downloads by HTTP(S) only
	// gets {HTTPURL}/fw/{token}, served by FirmwareHTTP. "": such a
	// device's item fails. ValidFirmwareHTTPURL checks it.
	HTTPURL string
	// DownloadTimeout bounds a download; UpdateTimeout the wait for the
	// Update Result after the Update was executed.
	DownloadTimeout, UpdateTimeout time.Duration
}

// Defaults of FirmwareOptions.
const (
	DefaultFirmwareDownloads       = 10
	DefaultFirmwareDownloadTimeout = 30 * time.Minute
	DefaultFirmwareUpdateTimeout   = 10 * time.Minute
)

// Object 5's resources.
var (
	fwPackagePath  = format.NewPath(5, 0, 0)
	fwURIPath      = format.NewPath(5, 0, 1)
	fwUpdatePath   = format.NewPath(5, 0, 2)
	fwStatePath    = format.NewPath(5, 0, 3)
	fwResultPath   = format.NewPath(5, 0, 5)
	fwProtocolPath = format.NewPath(5, 0, 8)
	fwDeliveryPath = format.NewPath(5, 0, 9)
)

// Object 5's values (State, Update Result, Update Delivery Method).
const (
	fwStateIdle     = 0
	fwStateHave     = 2 // Downloaded
	fwStateUpdating = 3
	fwResultSuccess = 1
	fwResultUnknown = -1 // not read yet
	fwDeliveryPush  = 1
	fwSweepInterval = time.Second
)

var errNoFirmwareReg = errors.New("the registry keeps no firmware packages")

// fwResults are the Update Result values 2-9 (LwM2M 1.0/1.1, object 5).
var fwResults = map[int]string{
	2: "not enough flash memory for the new firmware package",
	3: "out of RAM during the download",
	4: "connection lost during the download",
	5: "integrity check failure of the new firmware package",
	6: "unsupported package type",
	7: "invalid URI",
	8: "firmware update failed",
	9: "unsupported protocol",
}

// firmware is the server's firmware delivery: items by device, by
// download token and by slot group, and the images they serve.
type firmware struct {
	s   *Server
	reg FirmwareRegistry
	o   FirmwareOptions
	// httpURL is o.HTTPURL parsed; nil when unset.
	httpURL *url.URL

	// count is len(items), read without the lock on every uplink.
	count atomic.Int32

	mu     sync.Mutex
	items  map[string]*fwItem  // by device id
	tokens map[string]*fwItem  // by download token
	groups map[string]*fwGroup // by slot group (registry.FirmwareDelivery.SlotGroup)
	images map[string]*fwImage
}

// fwGroup is this node's items that share download slots: those of a
// batch task, or of a job started without one. Guarded by firmware.mu.
type fwGroup struct {
	items map[string]*fwItem // by device id
	// full: the group's slots were all taken (or the store failed) when
	// an item last asked. Until the next sweep, or a slot of the group
	// freed here, the uplinks of its items without a slot do not ask
	// again: a large task's waiting devices cost the store a few reads a
	// second, not one per uplink.
	full bool
	// offering: an offer of its slots is under way (offer); again: it
	// is to look once more, a slot having freed meanwhile.
	offering, again bool
}

// fwItem is one device's item.
type fwItem struct {
	d     registry.FirmwareDelivery
	token string
	img   *fwImage
	// The fields below are guarded by firmware.mu.
	step  registry.FirmwareStep
	since time.Time // when step began
	// slot: it holds a download slot of its group in the store
	// (registry.AcquireFirmwareSlot); slotErr: a store error taking one
	// was logged.
	slot, slotErr bool
	running, more bool // a worker drives it; drive again when done
	state, result int
	// resumed: the item was downloading (or downloaded) when the last
	// process stopped; the device's State decides where it goes on.
	resumed bool
}

// fwImage is a package's file, shared by its items.
type fwImage struct {
	pkg  *registry.OTAPackage
	data []byte
	etag []byte
	refs int
}

func newFirmware(s *Server, o FirmwareOptions) *firmware {
	if o.MaxDownloads <= 0 {
		o.MaxDownloads = DefaultFirmwareDownloads
	}
	if o.DownloadTimeout <= 0 {
		o.DownloadTimeout = DefaultFirmwareDownloadTimeout
	}
	if o.UpdateTimeout <= 0 {
		o.UpdateTimeout = DefaultFirmwareUpdateTimeout
	}
	f := &firmware{s: s, o: o, items: make(map[string]*fwItem), tokens: make(map[string]*fwItem),
		groups: make(map[string]*fwGroup), images: make(map[string]*fwImage)}
	f.reg, _ = s.reg.(FirmwareRegistry)
	if o.HTTPURL != "" {
		f.httpURL, _ = url.Parse(o.HTTPURL) // New checked it (ValidFirmwareHTTPURL)
	}
	return f
}

// DeliverFirmware queues an item (registry.FirmwareDeliverer). An item
// of another job for a device with one under way fails: one upgrade at
// a time per device.
func (s *Server) DeliverFirmware(d registry.FirmwareDelivery) {
	f := s.fw
	f.mu.Lock()
	if old := f.items[d.DeviceID]; old != nil {
		f.mu.Unlock()
		if old.d.UpgradeID != d.UpgradeID {
			f.report(d, registry.FirmwareReport{Step: registry.StepFailed, State: -1, Result: -1,
				Desc: "the device is being upgraded by firmware upgrade " + old.d.UpgradeID})
		}
		return
	}
	it := &fwItem{d: d, token: newRegistrationID() + newRegistrationID(), step: registry.StepQueued, since: s.now(),
		state: fwResultUnknown, result: fwResultUnknown}
	switch d.Step {
	case registry.StepUpdating:
		it.step = registry.StepUpdating // resumed after a restart: its result is due, not the package
	case registry.StepDownloading, registry.StepDownloaded:
		it.resumed = true // the device may hold the package already
	}
	f.items[d.DeviceID] = it
	f.tokens[it.token] = it
	g := f.groups[d.SlotGroup()]
	if g == nil {
		g = &fwGroup{items: make(map[string]*fwItem)}
		f.groups[d.SlotGroup()] = g
	}
	g.items[d.DeviceID] = it
	f.count.Store(int32(len(f.items)))
	f.mu.Unlock()
	s.work.run(func() { f.advance(d.DeviceID) })
}

// touched runs at every uplink of e's client: an item waiting for it
// moves on.
func (f *firmware) touched(e *entry) {
	if f.count.Load() == 0 {
		return
	}
	f.mu.Lock()
	_, ok := f.items[e.deviceID]
	f.mu.Unlock()
	if ok {
		f.s.work.run(func() { f.advance(e.deviceID) })
	}
}

// notified takes a notification of an object-5 resource.
func (f *firmware) notified(e *entry, path format.Path, ct int, body []byte) {
	if f.count.Load() == 0 || (path != fwStatePath && path != fwResultPath) {
		return
	}
	v, ok := intValue(path, ct, body)
	if !ok {
		return
	}
	f.mu.Lock()
	it := f.items[e.deviceID]
	if it != nil {
		if path == fwStatePath {
			it.state = v
		} else {
			it.result = v
		}
	}
	f.mu.Unlock()
	if it != nil {
		f.s.work.run(func() { f.advance(e.deviceID) })
	}
}

// intValue decodes a single integer resource.
func intValue(path format.Path, ct int, body []byte) (int, bool) {
	if ct < 0 {
		ct = int(format.FormatText)
	}
	recs, err := format.Decode(uint16(ct), path, body, format.DefaultModel())
	if err != nil || len(recs) != 1 {
		return 0, false
	}
	v, err := recs[0].Value.As(format.KindInteger)
	if err != nil {
		return 0, false
	}
	return int(v.Int()), true
}

// advance drives the device's item one step if its client can take a
// request; a drive under way is asked to look again instead.
func (f *firmware) advance(deviceID string) {
	if it, e, _ := f.claim(deviceID); it != nil {
		f.run(e, it)
	}
}

// claim readies the device's item to be driven, if its client can take
// a request and no drive is under way (that one is asked to look again):
// it marks the item running and, for one waiting to start, takes (or
// renews) a download slot of its group. refused reports that the group
// had no slot for it, or the store failed: the item stays queued,
// offered again at the next sweep, at its device's next uplink or when a
// slot of its group frees here.
func (f *firmware) claim(deviceID string) (it *fwItem, e *entry, refused bool) {
	f.mu.Lock()
	it = f.items[deviceID]
	if it == nil {
		f.mu.Unlock()
		return nil, nil, false
	}
	if it.running {
		it.more = true
		f.mu.Unlock()
		return nil, nil, false
	}
	e = f.s.store.device(deviceID)
	if e == nil || !e.awake(f.s.now(), f.s.o.QueueWindow) {
		f.mu.Unlock()
		return nil, nil, false // served at its next uplink
	}
	queued := it.step == registry.StepQueued
	if g := f.groups[it.d.SlotGroup()]; queued && !it.slot && g != nil && g.full {
		f.mu.Unlock()
		return nil, nil, true
	}
	it.running = true
	f.mu.Unlock()
	if queued && !f.takeSlot(it) {
		f.mu.Lock()
		it.running, it.more = false, false
		f.mu.Unlock()
		return nil, nil, true
	}
	return it, e, false
}

// run drives a claimed item until nothing asks it to look again.
func (f *firmware) run(e *entry, it *fwItem) {
	deviceID := it.d.DeviceID
	for {
		f.drive(e, it)
		f.mu.Lock()
		again := it.more && f.items[deviceID] == it
		it.more = false
		queued := it.step == registry.StepQueued
		if !again {
			it.running = false
		}
		f.mu.Unlock()
		if !again {
			return
		}
		// A start tried again (it waited for the device) renews its slot
		// first: the slot may have expired meanwhile.
		if e = f.s.store.device(deviceID); e == nil || (queued && !f.takeSlot(it)) {
			f.mu.Lock()
			it.running = false
			f.mu.Unlock()
			return
		}
	}
}

// takeSlot takes, or renews, a download slot of its group for its device
// in the store, and reports whether it holds one. Without a
// FirmwareRegistry there is no slot to take: start fails the item.
func (f *firmware) takeSlot(it *fwItem) bool {
	if f.reg == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(f.s.ctx, f.s.o.RequestTimeout)
	defer cancel()
	ok, err := f.reg.AcquireFirmwareSlot(ctx, it.d, f.o.MaxDownloads, f.slotTTL())
	f.mu.Lock()
	current := f.items[it.d.DeviceID] == it
	logErr := err != nil && !it.slotErr
	switch {
	case !current:
	case err != nil:
		it.slotErr = true
	case !ok:
		it.slot = false // one kept while the device slept expired, and went to another device
	default:
		it.slot = true
	}
	if g := f.groups[it.d.SlotGroup()]; g != nil && (err != nil || !ok) {
		g.full = true
	}
	f.mu.Unlock()
	switch {
	case logErr:
		f.s.log.Warn("lwm2m firmware: the item waits: no download slot could be taken", "device_id", it.d.DeviceID, "upgrade_id", it.d.UpgradeID, "err", err)
		return false
	case err != nil:
		return false
	case ok && !current: // it ended meanwhile: end released no slot
		f.releaseSlot(it)
		return false
	}
	return ok && current
}

// slotTTL is how long a download slot lives without its holder: past the
// download timeout, counted from the step's start, which comes at most a
// drive's request time after the slot is taken, and past the sweep that
// ends a late download (and releases the slot). A node that dies
// mid-download loses its slots once this much has passed.
func (f *firmware) slotTTL() time.Duration {
	return f.o.DownloadTimeout + f.s.o.RequestTimeout + 2*fwSweepInterval
}

// releaseSlot gives its download slot back to the store.
func (f *firmware) releaseSlot(it *fwItem) {
	ctx, cancel := context.WithTimeout(f.s.ctx, f.s.o.RequestTimeout)
	defer cancel()
	if err := f.reg.ReleaseFirmwareSlot(ctx, it.d); err != nil {
		f.s.log.Warn("lwm2m firmware: the download slot frees when it expires", "device_id", it.d.DeviceID, "upgrade_id", it.d.UpgradeID,
			"expiry", f.slotTTL(), "err", err)
	}
}

// drive performs the requests of its current step.
func (f *firmware) drive(e *entry, it *fwItem) {
	ctx, cancel := context.WithTimeout(f.s.ctx, f.s.o.RequestTimeout)
	defer cancel()
	f.mu.Lock()
	step, state, result := it.step, it.state, it.result
	f.mu.Unlock()
	if result > fwResultSuccess && step != registry.StepQueued {
		f.end(it, registry.StepFailed, "the device reports Update Result "+strconv.Itoa(result)+": "+resultText(result))
		return
	}
	switch step {
	case registry.StepQueued:
		if f.resume(ctx, e, it) {
			return
		}
		f.start(ctx, e, it)
	case registry.StepDownloading:
		if state != fwStateHave { // the notification may be lost, or its observation gone
			state, result = f.poll(ctx, e, it)
		}
		if result > fwResultSuccess {
			f.end(it, registry.StepFailed, "the device reports Update Result "+strconv.Itoa(result)+": "+resultText(result))
			return
		}
		if state == fwStateHave {
			f.downloaded(ctx, e, it)
		}
	case registry.StepUpdating:
		if result != fwResultSuccess || state != fwStateIdle {
			state, result = f.poll(ctx, e, it)
		}
		switch {
		case result == fwResultSuccess && state == fwStateIdle: // LwM2M: back to Idle with result 1
			f.end(it, registry.StepSucceeded, "")
		case result > fwResultSuccess:
			f.end(it, registry.StepFailed, "the device reports Update Result "+strconv.Itoa(result)+": "+resultText(result))
		}
	}
}

// resume takes up an item that was downloading, or downloaded, when the
// last process stopped, from the device's State, so a device that holds
// the package is not sent it again: State 2 (Downloaded) goes on to the
// Update, State 3 (Updating) waits for the result, and, for an item that
// had reached the Update, State 0 with a result ends it. It reports
// whether it moved the item; otherwise the delivery starts over.
func (f *firmware) resume(ctx context.Context, e *entry, it *fwItem) bool {
	f.mu.Lock()
	resumed := it.resumed
	f.mu.Unlock()
	if !resumed {
		return false
	}
	state, result := f.poll(ctx, e, it)
	if state < 0 {
		return true // unreadable (asleep, timed out): try at the next uplink
	}
	f.mu.Lock()
	it.resumed = false
	f.mu.Unlock()
	switch {
	case state == fwStateHave:
		f.downloaded(ctx, e, it)
	case state == fwStateUpdating:
		f.step(it, registry.StepUpdating, "resumed after a restart: the device is updating")
	case state == fwStateIdle && it.d.Step == registry.StepDownloaded && result == fwResultSuccess:
		f.end(it, registry.StepSucceeded, "")
	case state == fwStateIdle && it.d.Step == registry.StepDownloaded && result > fwResultSuccess:
		f.end(it, registry.StepFailed, "the device reports Update Result "+strconv.Itoa(result)+": "+resultText(result))
	default:
		return false
	}
	return true
}

// poll reads State and Update Result (a notification may be lost, or the
// observation ended with a new registration) and forgets the values so
// the next uplink reads them again.
func (f *firmware) poll(ctx context.Context, e *entry, it *fwItem) (state, result int) {
	state, result = f.readInt(ctx, e, fwStatePath), f.readInt(ctx, e, fwResultPath)
	f.mu.Lock()
	if state >= 0 {
		it.state = state
	}
	if result >= 0 {
		it.result = result
	}
	f.mu.Unlock()
	if !f.observed(e, fwStatePath) {
		f.observe(ctx, e)
	}
	return state, result
}

// start opens the item: image, delivery method, observations, then the
// Package URI (pull) or the Package itself (push).
func (f *firmware) start(ctx context.Context, e *entry, it *fwItem) {
	if f.reg == nil {
		f.end(it, registry.StepFailed, errNoFirmwareReg.Error())
		return
	}
	img, err := f.image(ctx, it)
	if err != nil {
		f.end(it, registry.StepFailed, "reading the package: "+err.Error())
		return
	}
	push := f.readInt(ctx, e, fwDeliveryPath) == fwDeliveryPush
	f.observe(ctx, e)
	if push {
		f.step(it, registry.StepDownloading, "sending the package to /5/0/0 (the device takes push delivery only)")
		resp, err := f.s.perform(ctx, e, &Operation{Name: OpWrite, Path: fwPackagePath, ContentFormat: format.FormatOpaque, Payload: img.data, Accept: -1})
		if !f.changed(it, "writing the package to /5/0/0", resp, err) {
			return
		}
		f.downloaded(ctx, e, it)
		return
	}
	protocols, err := f.readInts(ctx, e, fwProtocolPath)
	if err != nil {
		f.s.log.Debug("lwm2m firmware: waiting for the device", "device_id", it.d.DeviceID, "what", "reading /5/0/8", "err", err)
		return // read again at its next uplink: the answer decides the URI
	}
	httpScheme := ""
	if f.httpURL != nil {
		httpScheme = f.httpURL.Scheme
	}
	scheme, err := pullScheme(protocols, e.secure, httpScheme)
	if err != nil {
		f.end(it, registry.StepFailed, err.Error())
		return
	}
	uri, err := f.packageURI(e, it, scheme)
	if err != nil {
		f.end(it, registry.StepFailed, err.Error())
		return
	}
	resp, err := f.s.perform(ctx, e, &Operation{Name: OpWrite, Path: fwURIPath, Accept: -1,
		Records: []format.Record{{Path: fwURIPath, Value: format.StringValue(uri)}}})
	if !f.changed(it, "writing the Package URI /5/0/1", resp, err) {
		return
	}
	f.step(it, registry.StepDownloading, "the device downloads "+uri)
}

// downloaded frees the item's download slot and executes Update.
func (f *firmware) downloaded(ctx context.Context, e *entry, it *fwItem) {
	f.step(it, registry.StepDownloaded, "")
	resp, err := f.s.perform(ctx, e, &Operation{Name: OpExecute, Path: fwUpdatePath, Accept: -1})
	if !f.changed(it, "executing Update /5/0/2", resp, err) {
		return
	}
	f.mu.Lock()
	// Read afresh once it has updated, and look at once (a client that
	// notifies nothing shows its state to the reads).
	it.state, it.result, it.more = fwResultUnknown, fwResultUnknown, true
	f.mu.Unlock()
	f.step(it, registry.StepUpdating, "")
}

// changed reports whether a write or execute succeeded; else the item
// fails, or (the client fell asleep, the request timed out) stays for
// the device's next uplink.
func (f *firmware) changed(it *fwItem, what string, resp *Response, err error) bool {
	switch {
	case err != nil && waitForDevice(err):
		f.s.log.Debug("lwm2m firmware: waiting for the device", "device_id", it.d.DeviceID, "what", what, "err", err)
		return false
	case err != nil:
		f.end(it, registry.StepFailed, what+": "+err.Error())
		return false
	case resp.Code != codes.Changed:
		f.end(it, registry.StepFailed, what+": the device answered "+codeString(resp.Code))
		return false
	}
	return true
}

// waitForDevice reports whether err means the device could not be
// reached now (asleep, timed out): its item waits for its next uplink.
func waitForDevice(err error) bool {
	return errors.Is(err, registry.ErrTimeout) || errors.Is(err, ErrAsleep) || errors.Is(err, errUnreachable)
}

// readInts reads the integers of a resource of any number of instances
// (/5/0/8). A device that has no such resource, refuses the read or
// answers what does not decode says nothing: nil, nil. An error is
// returned only when the device could not be reached (waitForDevice).
func (f *firmware) readInts(ctx context.Context, e *entry, p format.Path) ([]int, error) {
	op := &Operation{Name: OpRead, Path: p, Accept: -1}
	resp, err := f.s.perform(ctx, e, op)
	switch {
	case err != nil && waitForDevice(err):
		return nil, err
	case err != nil || resp.Code != codes.Content:
		return nil, nil
	}
	recs, err := format.Decode(uint16(responseFormat(op, resp)), p, resp.Payload, format.DefaultModel())
	if err != nil {
		return nil, nil
	}
	var out []int
	for _, r := range recs {
		if v, err := r.Value.As(format.KindInteger); err == nil {
			out = append(out, int(v.Int()))
		}
	}
	return out, nil
}

// readInt reads a single integer resource; -1 if it cannot.
func (f *firmware) readInt(ctx context.Context, e *entry, p format.Path) int {
	op := &Operation{Name: OpRead, Path: p, Accept: -1}
	resp, err := f.s.perform(ctx, e, op)
	if err != nil || resp.Code != codes.Content {
		return -1
	}
	v, ok := intValue(p, responseFormat(op, resp), resp.Payload)
	if !ok {
		return -1
	}
	return v
}

// responseFormat is the content format of resp to op, as resultOf reads it.
func responseFormat(op *Operation, resp *Response) int {
	switch {
	case resp.ContentFormat >= 0:
		return resp.ContentFormat
	case op.Accept >= 0:
		return op.Accept
	}
	return int(format.FormatText)
}

// observe observes State and Update Result (their first values are
// taken as notifications); a refusal leaves the uplink reads.
func (f *firmware) observe(ctx context.Context, e *entry) {
	for _, p := range []format.Path{fwStatePath, fwResultPath} {
		op := &Operation{Name: OpObserve, Path: p, Accept: -1}
		resp, err := f.s.perform(ctx, e, op)
		if err != nil || resp.Code != codes.Content {
			continue
		}
		f.notified(e, p, responseFormat(op, resp), resp.Payload)
	}
}

func (f *firmware) observed(e *entry, p format.Path) bool { return f.s.observationOf(e, p) != nil }

// packageURI is where the device downloads its image by scheme
// (pullScheme): the API listener for http(s); this server's CoAP
// listener, or its DTLS one for a device that registered over DTLS.
func (f *firmware) packageURI(e *entry, it *fwItem, scheme string) (string, error) {
	if scheme == "http" || scheme == "https" {
		return f.httpURL.JoinPath(strings.Trim(FirmwareHTTPPath, "/"), it.token).String(), nil
	}
	addr := f.s.UDPAddr()
	if e.secure {
		addr = f.s.DTLSAddr()
	}
	if addr == nil {
		return "", fmt.Errorf("no %s listener to serve the package from", scheme)
	}
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "", err
	}
	if f.o.Host != "" {
		host = f.o.Host
	} else if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		return "", errors.New("the LwM2M listener is bound to an unspecified address: set coap.firmware.host to the address devices reach iotgate at")
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/fw/" + it.token, nil
}

// image returns its package file, loading it once for all its items.
func (f *firmware) image(ctx context.Context, it *fwItem) (*fwImage, error) {
	f.mu.Lock()
	if it.img != nil { // a start that waited for the device: it holds its reference
		img := it.img
		f.mu.Unlock()
		return img, nil
	}
	img := f.images[it.d.PackageID]
	if img != nil {
		img.refs++
		it.img = img
	}
	f.mu.Unlock()
	if img != nil {
		return img, nil
	}
	pkg, data, err := f.reg.OTAPackageImage(ctx, it.d.ProjectID, it.d.PackageID)
	if err != nil {
		return nil, err
	}
	etag, _ := hexPrefix(pkg.FileSHA256, 8)
	f.mu.Lock()
	defer f.mu.Unlock()
	if img = f.images[it.d.PackageID]; img == nil { // another item may have loaded it meanwhile
		img = &fwImage{pkg: pkg, data: data, etag: etag}
		f.images[it.d.PackageID] = img
	}
	img.refs++
	it.img = img
	return img, nil
}

// hexPrefix decodes the first n bytes of a hex string.
func hexPrefix(h string, n int) ([]byte, bool) {
	if len(h) < 2*n {
		return nil, false
	}
	out := make([]byte, n)
	for i := range out {
		v, err := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		if err != nil {
			return nil, false
		}
		out[i] = byte(v)
	}
	return out, true
}

// step moves it to a new step and reports it; leaving the download frees
// the item's slot.
func (f *firmware) step(it *fwItem, step registry.FirmwareStep, desc string) {
	f.mu.Lock()
	if f.items[it.d.DeviceID] != it {
		f.mu.Unlock()
		return
	}
	it.step, it.since = step, f.s.now()
	freed := step != registry.StepDownloading && f.releaseLocked(it)
	state, result := it.state, it.result
	f.mu.Unlock()
	if freed {
		f.releaseSlot(it)
	}
	f.report(it.d, registry.FirmwareReport{Step: step, State: state, Result: result, Desc: desc})
	if freed {
		f.kick(it.d.SlotGroup())
	}
}

// end finishes it and forgets it.
func (f *firmware) end(it *fwItem, step registry.FirmwareStep, desc string) {
	f.mu.Lock()
	if f.items[it.d.DeviceID] != it {
		f.mu.Unlock()
		return
	}
	delete(f.items, it.d.DeviceID)
	delete(f.tokens, it.token)
	if g := f.groups[it.d.SlotGroup()]; g != nil {
		if delete(g.items, it.d.DeviceID); len(g.items) == 0 {
			delete(f.groups, it.d.SlotGroup())
		}
	}
	f.count.Store(int32(len(f.items)))
	freed := f.releaseLocked(it)
	if img := it.img; img != nil {
		if img.refs--; img.refs == 0 {
			delete(f.images, it.d.PackageID)
		}
	}
	state, result := it.state, it.result
	f.mu.Unlock()
	if freed {
		f.releaseSlot(it)
	}
	f.report(it.d, registry.FirmwareReport{Step: step, State: state, Result: result, Desc: desc})
	if step == registry.StepFailed {
		f.s.log.Info("lwm2m firmware update failed", "device_id", it.d.DeviceID, "upgrade_id", it.d.UpgradeID, "reason", desc)
	}
	if freed {
		f.kick(it.d.SlotGroup())
	}
}

// releaseLocked marks its download slot free, if it holds one; the
// caller gives it back to the store (releaseSlot) once unlocked.
func (f *firmware) releaseLocked(it *fwItem) bool {
	if !it.slot {
		return false
	}
	it.slot = false
	return true
}

// kick offers a group's slots again, one of them having freed here.
func (f *firmware) kick(group string) {
	f.s.work.run(func() { f.offer(group) })
}

// offer gives the group's free download slots to its queued items whose
// devices are awake, asking the store for one item after another until
// it refuses: a full group costs one refusal, not one per waiting
// device. At most MaxDownloads items are tried: no more slots can be
// free.
func (f *firmware) offer(group string) {
	f.mu.Lock()
	g := f.groups[group]
	if g == nil {
		f.mu.Unlock()
		return
	}
	if g.offering {
		g.again = true
		f.mu.Unlock()
		return
	}
	g.offering = true
	for {
		g.full, g.again = false, false
		now := f.s.now()
		var next []string
		for dev, it := range g.items {
			if len(next) == f.o.MaxDownloads {
				break
			}
			if it.step == registry.StepQueued && !it.running {
				if e := f.s.store.device(dev); e != nil && e.awake(now, f.s.o.QueueWindow) {
					next = append(next, dev)
				}
			}
		}
		f.mu.Unlock()
		for _, dev := range next {
			it, e, refused := f.claim(dev)
			if refused {
				break
			}
			if it != nil {
				f.s.work.run(func() { f.run(e, it) })
			}
		}
		f.mu.Lock()
		if !g.again {
			g.offering = false
			f.mu.Unlock()
			return
		}
	}
}

func (f *firmware) report(d registry.FirmwareDelivery, rep registry.FirmwareReport) {
	if f.reg == nil {
		return
	}
	ctx, cancel := context.WithTimeout(f.s.ctx, f.s.o.RequestTimeout)
	defer cancel()
	if err := f.reg.ReportFirmware(ctx, d.UpgradeID, d.DeviceID, rep); err != nil {
		f.s.log.Warn("lwm2m firmware: recording progress", "device_id", d.DeviceID, "upgrade_id", d.UpgradeID, "step", rep.Step, "err", err)
	}
}

// sweepLoop fails items whose download or update outlasted its timeout
// and offers free slots to queued items (a device that stays awake sends
// no uplink to be offered one, and a slot freed on another node is
// learnt of only here).
func (f *firmware) sweepLoop() {
	defer f.s.wg.Done()
	t := time.NewTicker(fwSweepInterval)
	defer t.Stop()
	for {
		select {
		case <-f.s.ctx.Done():
			return
		case <-t.C:
			f.sweep(f.s.now())
		}
	}
}

func (f *firmware) sweep(now time.Time) {
	if f.count.Load() == 0 {
		return
	}
	type late struct {
		it   *fwItem
		desc string
	}
	var due []late
	f.mu.Lock()
	for _, it := range f.items {
		switch {
		case (it.step == registry.StepDownloading || it.step == registry.StepDownloaded) && now.Sub(it.since) > f.o.DownloadTimeout:
			due = append(due, late{it, fmt.Sprintf("the download did not finish within %v (last State %d)", f.o.DownloadTimeout, it.state)})
		case it.step == registry.StepUpdating && now.Sub(it.since) > f.o.UpdateTimeout:
			due = append(due, late{it, fmt.Sprintf("no Update Result within %v of the Update (last State %d, Update Result %d)", f.o.UpdateTimeout, it.state, it.result)})
		}
	}
	f.mu.Unlock()
	for _, d := range due {
		f.end(d.it, registry.StepFailed, d.desc)
	}
	f.mu.Lock()
	groups := make([]string, 0, len(f.groups))
	for g := range f.groups {
		groups = append(groups, g)
	}
	f.mu.Unlock()
	for _, g := range groups {
		f.kick(g)
	}
}

func resultText(r int) string {
	if t, ok := fwResults[r]; ok {
		return t
	}
	return "unknown Update Result"
}
