package regions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// RegionInfo is one region as the centre knows it: where its devices
// connect, and how the centre asks it things.
type RegionInfo struct {
	ID       string
	Endpoint Endpoint
	Client   Region
}

// CentreOptions configures a Centre.
type CentreOptions struct {
	Regions   []RegionInfo
	Rules     Rules
	Directory *Directory
	// MoveGrace is how long an online device that was moved may stay
	// connected in its old region before its copy there is deleted
	// anyway (which closes its session); 0: DefaultMoveGrace.
	MoveGrace time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
}

// DefaultMoveGrace is CentreOptions.MoveGrace's default.
const DefaultMoveGrace = 10 * time.Minute

// Centre assigns devices to regions and tells devices where to connect.
type Centre struct {
	regions map[string]RegionInfo
	order   []string
	rules   Rules
	dir     *Directory
	grace   time.Duration
	log     *slog.Logger
	now     func() time.Time
}

// NewCentre checks the options and returns the centre.
func NewCentre(o CentreOptions) (*Centre, error) {
	c := &Centre{regions: map[string]RegionInfo{}, rules: o.Rules, dir: o.Directory, grace: o.MoveGrace,
		log: o.Logger, now: o.Now}
	for _, r := range o.Regions {
		if r.ID == "" || r.Client == nil {
			return nil, errors.New("regions: a region needs an id and a client")
		}
		if _, dup := c.regions[r.ID]; dup {
			return nil, fmt.Errorf("regions: region %q given twice", r.ID)
		}
		c.regions[r.ID] = r
		c.order = append(c.order, r.ID)
	}
	if err := o.Rules.Check(func(id string) bool { _, ok := c.regions[id]; return ok }); err != nil {
		return nil, fmt.Errorf("regions: %w", err)
	}
	if c.grace <= 0 {
		c.grace = DefaultMoveGrace
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// Endpoint returns the region's device endpoint.
func (c *Centre) Endpoint(region string) (Endpoint, bool) {
	r, ok := c.regions[region]
	return r.Endpoint, ok
}

// PreAuth answers an Alibaba pre-auth from src: the region the device is
// assigned to (first contact: by the rules) verifies its sign and issues
// its iotToken. On first contact the sign is verified by the region
// holding the device before anything is assigned or transferred, so an
// unsigned request changes nothing.
func (c *Centre) PreAuth(ctx context.Context, src netip.Addr, p PreAuth) (Grant, Endpoint, error) {
	if err := p.Validate(); err != nil {
		return Grant{}, Endpoint{}, err
	}
	for retried := false; ; retried = true {
		e, err := c.dir.Get(ctx, p.ProductKey, p.DeviceName)
		fresh := errors.Is(err, kv.ErrNotFound)
		if fresh {
			e, err = c.firstContact(ctx, src, p.ProductKey, p.DeviceName, func(holder RegionInfo) error {
				_, err := holder.Client.PreAuth(ctx, p)
				return err
			})
		}
		if err != nil {
			return Grant{}, Endpoint{}, err
		}
		r, ok := c.regions[e.Region]
		if !ok {
			return Grant{}, Endpoint{}, &RegionError{Region: e.Region, Err: ErrUnknownRegion}
		}
		g, err := r.Client.PreAuth(ctx, p)
		if errors.Is(err, ErrUnknownDevice) && !fresh && !retried {
			if err := c.forget(ctx, e); err != nil {
				return Grant{}, Endpoint{}, err
			}
			continue
		}
		if err != nil {
			return Grant{}, Endpoint{}, err
		}
		return g, r.Endpoint, nil
	}
}

// Bootstrap answers an Alibaba bootstrap (unsigned, as Alibaba's is):
// the endpoint of the device's region, assigning it by the rules on
// first contact.
func (c *Centre) Bootstrap(ctx context.Context, src netip.Addr, pk, dn string) (Endpoint, error) {
	if pk == "" || len(pk) > maxKeyLen {
		return Endpoint{}, &ParamError{Param: "productKey", Reason: "missing or too long"}
	}
	if dn == "" || len(dn) > maxKeyLen {
		return Endpoint{}, &ParamError{Param: "deviceName", Reason: "missing or too long"}
	}
	e, err := c.dir.Get(ctx, pk, dn)
	if err == nil && e.From == "" {
		// A device bootstraps when it cannot connect: make sure its
		// region still holds it. A region that does not answer changes
		// nothing (the device retries).
		if r, ok := c.regions[e.Region]; ok {
			if _, derr := r.Client.Device(ctx, pk, dn); errors.Is(derr, ErrUnknownDevice) {
				if err := c.forget(ctx, e); err != nil {
					return Endpoint{}, err
				}
				err = kv.ErrNotFound
			}
		}
	}
	if errors.Is(err, kv.ErrNotFound) {
		e, err = c.firstContact(ctx, src, pk, dn, nil)
	}
	if err != nil {
		return Endpoint{}, err
	}
	r, ok := c.regions[e.Region]
	if !ok {
		return Endpoint{}, &RegionError{Region: e.Region, Err: ErrUnknownRegion}
	}
	return r.Endpoint, nil
}

// forget drops the assignment of a device its region no longer holds
// (deleted there by its operator), so the centre keeps no name of a
// device that is gone, and a device of that name made again anywhere
// is assigned afresh. An assignment changed meanwhile, or with a move
// under way, is kept.
func (c *Centre) forget(ctx context.Context, e *Entry) error {
	if err := c.dir.Forget(ctx, e); err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	c.log.Info("assignment of a device its region no longer holds dropped", "device_id", e.DeviceID, "region", e.Region)
	return nil
}

// firstContact finds the region holding the device, runs verify there
// (when not nil), picks the device's region by the rules, transfers the
// device there if another region holds it, and records the assignment.
func (c *Centre) firstContact(ctx context.Context, src netip.Addr, pk, dn string, verify func(RegionInfo) error) (*Entry, error) {
	holder, held, err := c.locate(ctx, pk, dn)
	if err != nil {
		return nil, err
	}
	if verify != nil {
		if err := verify(c.regions[holder]); err != nil {
			return nil, err
		}
	}
	return c.assign(ctx, src, pk, dn, holder, held)
}

// assign assigns a device that holder holds (and that proved itself, or
// whose protocol has no proof) by the rules, transferring it if they
// pick another region.
func (c *Centre) assign(ctx context.Context, src netip.Addr, pk, dn, holder string, held Held) (*Entry, error) {
	target := c.rules.Pick(src, pk)
	e := Entry{ProductKey: pk, DeviceName: dn, ProjectID: held.ProjectID, DeviceID: held.DeviceID,
		Region: target, Since: c.now().UTC()}
	if target != holder {
		if err := c.transfer(ctx, pk, dn, holder, target); err != nil {
			return nil, err
		}
		e.From = holder
	}
	cur, err := c.dir.Assign(ctx, e)
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	c.log.Info("device assigned to a region", "product_key", pk, "device_name", dn, "region", cur.Region,
		"held_by", holder, "source", src.String())
	if err := c.finishMove(ctx, cur); err != nil {
		c.log.Warn("old copy of a moved device not removed yet", "product_key", pk, "device_name", dn, "from", holder, "err", err)
	}
	return cur, nil
}

// locate asks every region, at once, which holds the device.
func (c *Centre) locate(ctx context.Context, pk, dn string) (string, Held, error) {
	return c.ask(ctx, func(r Region) (Held, error) { return r.Device(ctx, pk, dn) })
}

// ask puts one question to every region at once and returns the region
// that answered it: ErrUnknownDevice from every region means none holds
// the device; the holder's refusal (a wrong sign, a bad parameter) is
// returned as it is.
func (c *Centre) ask(ctx context.Context, q func(Region) (Held, error)) (string, Held, error) {
	type answer struct {
		held Held
		err  error
	}
	answers := make([]answer, len(c.order))
	var wg sync.WaitGroup
	for i, id := range c.order {
		wg.Go(func() {
			h, err := q(c.regions[id].Client)
			answers[i] = answer{h, err}
		})
	}
	wg.Wait()
	var failed error
	var pe *ParamError
	for i, a := range answers {
		switch {
		case a.err == nil:
			return c.order[i], a.held, nil
		case errors.Is(a.err, ErrBadSign), errors.Is(a.err, ErrAuthType), errors.As(a.err, &pe):
			return "", Held{}, a.err
		case !errors.Is(a.err, ErrUnknownDevice) && failed == nil:
			failed = &RegionError{Region: c.order[i], Err: a.err}
		}
	}
	if failed != nil {
		// A region that did not answer may hold it: not "unknown".
		return "", Held{}, failed
	}
	return "", Held{}, ErrUnknownDevice
}

// transfer copies the device from one region into another.
func (c *Centre) transfer(ctx context.Context, pk, dn, from, to string) error {
	t, err := c.regions[from].Client.Export(ctx, pk, dn)
	if err != nil {
		return &RegionError{Region: from, Err: fmt.Errorf("export: %w", err)}
	}
	if err := c.regions[to].Client.Import(ctx, t); err != nil {
		return &RegionError{Region: to, Err: fmt.Errorf("import: %w", err)}
	}
	return nil
}

// Move re-assigns the project's device to region to: the device is
// provisioned there, told to bootstrap again if it is online in its old
// region, and removed from the old region once it connected in the new
// one (or is offline, or MoveGrace passed). The device must have been
// assigned (have made first contact).
func (c *Centre) Move(ctx context.Context, project, deviceID, to string) (*Entry, error) {
	if _, ok := c.regions[to]; !ok {
		return nil, ErrUnknownRegion
	}
	e, err := c.dir.ByDeviceID(ctx, deviceID)
	if errors.Is(err, kv.ErrNotFound) || err == nil && e.ProjectID != project {
		return nil, ErrUnknownDevice
	}
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	if e.Region == to {
		return e, nil
	}
	if e.From != "" {
		// A move under way: its old copy goes now, so at most two
		// regions ever hold the device.
		if err := c.dropOld(ctx, e); err != nil {
			return nil, err
		}
	}
	old := e.Region
	if err := c.transfer(ctx, e.ProductKey, e.DeviceName, old, to); err != nil {
		return nil, err
	}
	e, err = c.dir.Update(ctx, e.ProductKey, e.DeviceName, func(e *Entry) error {
		e.Region, e.From, e.Since = to, old, c.now().UTC()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	c.log.Info("device moved to another region", "project", project, "device_id", deviceID, "from", old, "to", to)
	switch err := c.regions[old].Client.NotifyBootstrap(ctx, e.ProductKey, e.DeviceName, c.redirect(ctx, e)); {
	case err == nil:
		c.log.Info("told the device to bootstrap again", "device_id", deviceID, "region", old)
	case errors.Is(err, ErrOffline):
	default:
		c.log.Warn("bootstrap notify failed; the device moves when its old copy goes", "device_id", deviceID, "err", err)
	}
	if err := c.finishMove(ctx, e); err != nil {
		c.log.Warn("old copy of a moved device not removed yet", "device_id", deviceID, "from", old, "err", err)
	}
	return e, nil
}

// redirect is what an online Alibaba device moved to e.Region is pushed
// (thing.bootstrap.config.push): that region's MQTT endpoint and an
// iotToken it issued; nil when it issues none (the device is still told
// to bootstrap again).
func (c *Centre) redirect(ctx context.Context, e *Entry) *Redirect {
	r := c.regions[e.Region]
	g, err := r.Client.IssueToken(ctx, e.ProductKey, e.DeviceName)
	if err != nil {
		c.log.Info("no iotToken for the moved device's redirect; it is told to bootstrap again", "device_id", e.DeviceID,
			"region", e.Region, "err", err)
		return nil
	}
	return &Redirect{IotID: g.IotID, IotToken: g.IotToken, Host: r.Endpoint.MQTTHost, Port: r.Endpoint.MQTTPort}
}

// Sweep finishes the moves under way whose old copy can go; the centre
// runs it periodically (RunSweeps).
func (c *Centre) Sweep(ctx context.Context) error {
	moving, err := c.dir.Moving(ctx, 1000)
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	var first error
	for i := range moving {
		if err := c.finishMove(ctx, &moving[i]); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// RunSweeps calls Sweep every interval until ctx ends.
func (c *Centre) RunSweeps(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := c.Sweep(ctx); err != nil {
				c.log.Warn("move sweep", "err", err)
			}
		}
	}
}

// finishMove deletes a moved device's old copy once it can go: the
// device is not online there, or is online in its new region, or the
// grace period passed.
func (c *Centre) finishMove(ctx context.Context, e *Entry) error {
	if e.From == "" {
		return nil
	}
	if from, ok := c.regions[e.From]; ok {
		h, err := from.Client.Device(ctx, e.ProductKey, e.DeviceName)
		switch {
		case errors.Is(err, ErrUnknownDevice):
			return c.clearFrom(ctx, e)
		case err != nil:
			return &RegionError{Region: e.From, Err: err}
		}
		if h.Online && c.now().Sub(e.Since) < c.grace {
			n, err := c.regions[e.Region].Client.Device(ctx, e.ProductKey, e.DeviceName)
			if err != nil || !n.Online {
				return nil // wait for it
			}
		}
	}
	return c.dropOld(ctx, e)
}

// dropOld deletes the device's copy in e.From and clears e.From.
func (c *Centre) dropOld(ctx context.Context, e *Entry) error {
	if from, ok := c.regions[e.From]; ok {
		if err := from.Client.Delete(ctx, e.ProductKey, e.DeviceName); err != nil {
			return &RegionError{Region: e.From, Err: fmt.Errorf("delete old copy: %w", err)}
		}
		c.log.Info("old copy of a moved device deleted", "device_id", e.DeviceID, "region", e.From)
	}
	return c.clearFrom(ctx, e)
}

func (c *Centre) clearFrom(ctx context.Context, e *Entry) error {
	from := e.From
	_, err := c.dir.Update(ctx, e.ProductKey, e.DeviceName, func(cur *Entry) error {
		if cur.From == from {
			cur.From = ""
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	e.From = ""
	return nil
}
