package registry

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// NewDevice is what a caller supplies to create a device.
type NewDevice struct {
	ProjectID     string
	DeviceID      string // empty: "{product_id}_{node_id}"
	NodeID        string
	ProductID     string
	GatewayID     string
	DeviceName    string
	Description   string
	ExtensionInfo json.RawMessage
	Auth          AuthInfo // Type empty: SECRET; Secret empty: generated
	Tags          []Tag
}

// CreateDevice registers a device. It is INACTIVE until it first connects;
// with a non-zero Auth.Timeout it is deleted if that does not happen in
// time.
func (r *Registry) CreateDevice(ctx context.Context, n NewDevice) (*Device, error) {
	return r.CreateDeviceWith(ctx, n, nil)
}

// CreateDeviceWith is CreateDevice with also (when not nil) run in the
// create's transaction once its checks have passed, with the device as it
// will be stored: what also writes is durable exactly when the device is
// (a batch task records an item's result this way, so a crash can never
// leave a device created and its row not done, or the reverse). An error
// from also refuses the create and is returned unchanged. also may run
// more than once (see write).
func (r *Registry) CreateDeviceWith(ctx context.Context, n NewDevice, also func(Writer, *Device) error) (*Device, error) {
	d, err := r.newDevice(n)
	if err != nil {
		return nil, err
	}
	// The committer runs every write of the node on one goroutine, so the
	// CPU work of a create (decoding its product, sealing and encoding the
	// record) is done here, concurrently; inside the commit only the
	// checks that need the current state remain.
	p, err := r.ProductByID(ctx, d.ProductID)
	if err != nil {
		var nf *NotFoundError
		if errors.As(err, &nf) {
			return nil, &NotFoundError{Kind: EntityProduct, ID: d.ProductID}
		}
		return nil, err
	}
	rec, err := r.encodeDevice(d)
	if err != nil {
		return nil, err
	}
	countExactly := r.mustCount(ctx, d.ProductID)
	ev, err := r.encodeDeviceChange(nil, nil, d)
	if err != nil {
		return nil, err
	}
	err = r.write(ctx, func(w Writer) error {
		p, err := currentProduct(w, p, d)
		if err != nil {
			return err
		}
		idx := ownedIndexes(d, p.IsCoAP())
		if err := checkUnique(w, d, idx); err != nil {
			return err
		}
		if countExactly {
			if err := r.checkProductQuota(w, d); err != nil {
				return err
			}
		}
		if err := r.checkGateway(w, d); err != nil {
			return err
		}
		if err := r.putDeviceRecord(w, nil, d, rec, &ev); err != nil {
			return err
		}
		if err := writeIndexes(w, d, idx); err != nil {
			return err
		}
		if err := countDevice(w, d, 1); err != nil {
			return err
		}
		cacheDevice(w, d, createdLookups(d, idx)...)
		if also != nil {
			return also(w, d)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	d.Status = StatusInactive
	if d.GatewayID != "" {
		r.router.subDevicesChanged(d.GatewayID, SubDeviceChange{Devices: []*Device{d}})
	}
	return d, nil
}

func (d *Device) validateNew() error {
	if d.ProjectID == "" {
		return invalid("project_id", "is required")
	}
	if err := checkID("node_id", d.NodeID, 64, true); err != nil {
		return err
	}
	if err := checkID("product_id", d.ProductID, 36, true); err != nil {
		return err
	}
	if d.DeviceID == "" {
		d.DeviceID = d.ProductID + "_" + d.NodeID
	}
	if err := checkID("device_id", d.DeviceID, 128, true); err != nil {
		return err
	}
	if err := checkID("gateway_id", d.GatewayID, 128, false); err != nil {
		return err
	}
	if d.GatewayID == d.DeviceID {
		d.GatewayID = "" // IoTDA's way of saying "directly connected"
	}
	if err := checkName("device_name", d.DeviceName, 256, false); err != nil {
		return err
	}
	if err := checkName("description", d.Description, 2048, false); err != nil {
		return err
	}
	if err := checkExtension(d.ExtensionInfo); err != nil {
		return err
	}
	if err := checkTags("tags", d.Tags); err != nil {
		return err
	}
	a := &d.Auth
	switch a.Type {
	case "":
		a.Type = AuthSecret
	case AuthSecret, AuthCertificates:
	default:
		return invalid("auth_info.auth_type", "must be SECRET or CERTIFICATES")
	}
	if a.Type == AuthSecret {
		if a.Secret == "" {
			a.Secret = NewSecret()
		} else if err := checkSecret("auth_info.secret", a.Secret); err != nil {
			return err
		}
	} else if a.Secret != "" {
		return invalid("auth_info.secret", "is not used by CERTIFICATES devices")
	}
	var err error
	if a.Fingerprint, err = normFingerprint("auth_info.fingerprint", a.Fingerprint); err != nil {
		return err
	}
	if a.Fingerprint != "" && a.Type != AuthCertificates {
		return invalid("auth_info.fingerprint", "is only used by CERTIFICATES devices")
	}
	if a.Timeout < 0 || a.Timeout > MaxTimeout {
		return invalid("auth_info.timeout", "must be 0 to %d seconds", MaxTimeout)
	}
	return nil
}

func checkExtension(raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	if len(raw) > 1024 {
		return invalid("extension_info", "must be at most 1 KB")
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return invalid("extension_info", "must be a JSON object")
	}
	return nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

func absent(w Reader, k []byte, field UniqueField, value string) error {
	if t, ok := w.(*tracked); ok && t.r.keys != nil && t.r.keys.absent(k) {
		return nil
	}
	_, err := w.Get(k)
	if err == nil {
		return &ConflictError{Field: field, Value: value}
	}
	if errors.Is(err, kv.ErrNotFound) {
		return nil
	}
	return err
}

// putDevice writes d's record and keeps the indexes that can change after
// creation (fingerprints, expiry) in step with it. old is the stored
// version or nil; d nil deletes.
func (r *Registry) putDevice(w Writer, old, d *Device) error {
	var rec []byte
	if d != nil {
		var err error
		if rec, err = r.encodeDevice(d); err != nil {
			return err
		}
	}
	return r.putDeviceRecord(w, old, d, rec, nil)
}

// putDeviceRecord is putDevice with d already encoded (rec). It records
// the device event of the change: ev, or when nil, encoded here.
func (r *Registry) putDeviceRecord(w Writer, old, d *Device, rec []byte, ev *encodedEvent) error {
	var oldFP, newFP [2]string
	var oldExp, newExp time.Time
	if old != nil {
		oldFP = [2]string{old.Auth.Fingerprint, old.Auth.SecondaryFingerprint}
		oldExp = old.ExpireAt
	}
	if d != nil {
		newFP = [2]string{d.Auth.Fingerprint, d.Auth.SecondaryFingerprint}
		newExp = d.ExpireAt
	}
	for _, fp := range oldFP {
		if fp != "" && fp != newFP[0] && fp != newFP[1] {
			if err := w.Delete(fingerprintKey(fp)); err != nil {
				return err
			}
		}
	}
	for _, fp := range newFP {
		if fp != "" && fp != oldFP[0] && fp != oldFP[1] {
			if err := w.Set(fingerprintKey(fp), []byte(d.DeviceID)); err != nil {
				return err
			}
		}
	}
	if !oldExp.Equal(newExp) {
		if !oldExp.IsZero() {
			if err := w.Delete(expiryKey(oldExp, old.DeviceID)); err != nil {
				return err
			}
		}
		if !newExp.IsZero() {
			if err := w.Set(expiryKey(newExp, d.DeviceID), nil); err != nil {
				return err
			}
		}
	}
	if err := syncTagIndex(w, old, d); err != nil {
		return err
	}
	if err := r.deviceEvent(w, old, d, ev); err != nil {
		return err
	}
	if d == nil {
		return w.Delete(deviceKey(old.DeviceID))
	}
	return w.Set(deviceKey(d.DeviceID), rec)
}

// encodeDevice seals d's secrets and encodes the record putDeviceRecord
// stores (devicebinary.go).
func (r *Registry) encodeDevice(d *Device) ([]byte, error) {
	rec := *d
	if len(d.ClientIDs) > 0 {
		rec.ClientIDs = append([]ClientID(nil), d.ClientIDs...)
		r.sealClientIDs(&rec)
	}
	rec.ExtensionInfo = compactExtension(d.ExtensionInfo)
	secret := r.seal.seal(d.Auth.Secret, d.DeviceID+"/secret")
	secondary := r.seal.seal(d.Auth.SecondarySecret, d.DeviceID+"/secondary")
	return appendDeviceRecord(make([]byte, 0, 160+len(rec.ExtensionInfo)), &rec, secret, secondary, true), nil
}

// getDevice reads and unseals a device record; Status is not filled in.
func (r *Registry) getDevice(rd Reader, id string) (*Device, error) {
	b, err := rd.Get(deviceKey(id))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, &NotFoundError{Kind: EntityDevice, ID: id}
	}
	if err != nil {
		return nil, fmt.Errorf("read device %s: %w", id, err)
	}
	return r.decodeDevice(id, b)
}

// decodeDevice decodes and unseals the stored record b of device id.
func (r *Registry) decodeDevice(id string, b []byte) (*Device, error) {
	d, secret, secondary, err := decodeSealedDevice(id, b)
	if err != nil {
		return nil, fmt.Errorf("decode device %s: %w", id, err)
	}
	if d.Auth.Secret, err = r.seal.open(secret, id+"/secret"); err != nil {
		return nil, fmt.Errorf("device %s: %w", id, err)
	}
	if d.Auth.SecondarySecret, err = r.seal.open(secondary, id+"/secondary"); err != nil {
		return nil, fmt.Errorf("device %s: %w", id, err)
	}
	if err := r.openClientIDs(&d); err != nil {
		return nil, fmt.Errorf("device %s: %w", id, err)
	}
	return &d, nil
}

// decodeSealedDevice reads a device record in either stored form, its
// secrets still sealed.
func decodeSealedDevice(id string, b []byte) (d Device, secret, secondary []byte, err error) {
	if len(b) > 0 && b[0] == '{' {
		var rec deviceRecordJSON
		if err := json.Unmarshal(b, &rec); err != nil {
			return Device{}, nil, nil, err
		}
		return rec.Device, rec.Secret, rec.Secondary, nil
	}
	return decodeDeviceRecord(id, b)
}

// lookup resolves an index entry to its device.
func (r *Registry) lookup(ctx context.Context, k []byte, kind Entity, id string) (*Device, error) {
	if r.cache != nil {
		if v, gen, ok := r.cache.get(k); ok {
			return r.cachedDevice(ctx, v.(string), true)
		} else {
			var devID []byte
			err := r.view(ctx, func(rd Reader) error {
				var err error
				devID, err = rd.Get(k)
				return err
			})
			if errors.Is(err, kv.ErrNotFound) {
				return nil, &NotFoundError{Kind: kind, ID: id}
			}
			if err != nil {
				return nil, err
			}
			r.cache.put(k, string(devID), gen)
			return r.cachedDevice(ctx, string(devID), true)
		}
	}
	var d *Device
	err := r.view(ctx, func(rd Reader) error {
		devID, err := rd.Get(k)
		if errors.Is(err, kv.ErrNotFound) {
			return &NotFoundError{Kind: kind, ID: id}
		}
		if err != nil {
			return err
		}
		d, err = r.getDevice(rd, string(devID))
		return err
	})
	if err != nil {
		return nil, err
	}
	r.fillStatus(d)
	return d, nil
}

// cachedDevice returns a copy of the device, from the cache when it is
// there, with its status when fill. Callers may modify the copy.
func (r *Registry) cachedDevice(ctx context.Context, id string, fill bool) (*Device, error) {
	k := deviceKey(id)
	v, gen, ok := r.cache.get(k)
	var d *Device
	if blob, isBlob := v.(deviceBlob); ok && isBlob {
		d, _ = blob.device(id) // a blob that does not decode is a miss
	}
	if d == nil {
		err := r.view(ctx, func(rd Reader) error {
			var err error
			d, err = r.getDevice(rd, id)
			return err
		})
		if err != nil {
			return nil, err
		}
		r.cache.put(k, blobOf(d), gen)
	}
	if fill {
		r.fillStatus(d)
	}
	return d, nil
}

// Device returns the device with this id, in any project. Listeners use
// it to authenticate; the REST API uses ProjectDevice.
func (r *Registry) Device(ctx context.Context, id string) (*Device, error) {
	return r.device(ctx, id, true)
}

// device is Device, filling in the status only when fill: the status of
// a device about to connect is of no use, and on a cluster costs a read.
func (r *Registry) device(ctx context.Context, id string, fill bool) (*Device, error) {
	if r.cache != nil {
		return r.cachedDevice(ctx, id, fill)
	}
	var d *Device
	err := r.view(ctx, func(rd Reader) error {
		var err error
		d, err = r.getDevice(rd, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if fill {
		r.fillStatus(d)
	}
	return d, nil
}

// ProjectDevice returns the device only if it belongs to project, so one
// tenant can never learn of another's devices.
func (r *Registry) ProjectDevice(ctx context.Context, project, id string) (*Device, error) {
	d, err := r.Device(ctx, id)
	if err != nil {
		return nil, err
	}
	if d.ProjectID != project {
		return nil, &NotFoundError{Kind: EntityDevice, ID: id}
	}
	r.withStatusTime(ctx, d)
	return d, nil
}

// DeviceByNodeID finds a device of a CoAP/LwM2M product by node id (the
// LwM2M endpoint name, which carries no product).
func (r *Registry) DeviceByNodeID(ctx context.Context, nodeID string) (*Device, error) {
	return r.lookup(ctx, nodeKey(nodeID), EntityNode, nodeID)
}

// DeviceByProductNode finds a device by product and node id.
func (r *Registry) DeviceByProductNode(ctx context.Context, productID, nodeID string) (*Device, error) {
	return r.lookup(ctx, productNodeKey(productID, nodeID), EntityNode, productID+"/"+nodeID)
}

// DeviceByFingerprint finds the device whose primary or secondary
// certificate fingerprint (hex, any case) this is.
func (r *Registry) DeviceByFingerprint(ctx context.Context, fp string) (*Device, error) {
	fp, err := normFingerprint("fingerprint", fp)
	if err != nil {
		return nil, err
	}
	return r.lookup(ctx, fingerprintKey(fp), EntityFingerprint, fp)
}

// DeviceUpdate holds the fields PUT /devices/{id} may change; nil means
// unchanged.
type DeviceUpdate struct {
	DeviceName    *string
	Description   *string
	ExtensionInfo json.RawMessage
	SecureAccess  *bool
	Timeout       *int64
	// Tags, when not nil, replace the device's tags.
	Tags *[]Tag
}

// UpdateDevice changes a device's descriptive fields and access settings.
func (r *Registry) UpdateDevice(ctx context.Context, project, id string, u DeviceUpdate) (*Device, error) {
	if u.DeviceName != nil {
		if err := checkName("device_name", *u.DeviceName, 256, false); err != nil {
			return nil, err
		}
	}
	if u.Description != nil {
		if err := checkName("description", *u.Description, 2048, false); err != nil {
			return nil, err
		}
	}
	if err := checkExtension(u.ExtensionInfo); err != nil {
		return nil, err
	}
	if u.Timeout != nil && (*u.Timeout < 0 || *u.Timeout > MaxTimeout) {
		return nil, invalid("auth_info.timeout", "must be 0 to %d seconds", MaxTimeout)
	}
	if u.Tags != nil {
		if err := checkTags("tags", *u.Tags); err != nil {
			return nil, err
		}
	}
	return r.mutateDevice(ctx, project, id, func(d *Device) error {
		if u.Tags != nil {
			d.Tags = nil
			if len(*u.Tags) > 0 {
				d.Tags = slices.Clone(*u.Tags)
			}
		}
		if u.DeviceName != nil {
			d.DeviceName = *u.DeviceName
		}
		if u.Description != nil {
			d.Description = *u.Description
		}
		if u.ExtensionInfo != nil {
			d.ExtensionInfo = u.ExtensionInfo
		}
		if u.SecureAccess != nil {
			d.Auth.SecureAccess = *u.SecureAccess
		}
		if u.Timeout != nil {
			d.Auth.Timeout, d.Auth.TimeoutSet = *u.Timeout, true
			// The deadline counts from creation and only binds a device
			// that has never connected.
			d.ExpireAt = time.Time{}
			if d.ActiveTime.IsZero() && *u.Timeout > 0 {
				d.ExpireAt = d.CreateTime.Add(time.Duration(*u.Timeout) * time.Second)
			}
		}
		return nil
	})
}

// mutateDevice applies fn to the stored device in one durable write. An
// empty project skips the tenant check (listener calls).
//
// The committer runs every write of the node on one goroutine, so the
// record is read, decoded, changed and re-encoded here, concurrently with
// other callers; inside the commit only a comparison with the stored bytes
// remains. If the record changed in between, fn runs again on the stored
// one, inside the commit. fn must therefore only change the device it is
// given.
func (r *Registry) mutateDevice(ctx context.Context, project, id string, fn func(*Device) error) (*Device, error) {
	// change applies fn to a copy of old and checks what it changed.
	change := func(w Reader, old *Device) (*Device, error) {
		if project != "" && old.ProjectID != project {
			return nil, &NotFoundError{Kind: EntityDevice, ID: id}
		}
		d := *old
		if err := fn(&d); err != nil {
			return nil, err
		}
		if err := newFingerprintsFree(w, old, &d); err != nil {
			return nil, err
		}
		return &d, nil
	}

	var (
		read     []byte // the record as read outside the commit
		old, out *Device
		rec      []byte
		ev       encodedEvent // out's device event
	)
	err := r.view(ctx, func(rd Reader) error {
		var err error
		if read, err = rd.Get(deviceKey(id)); err != nil {
			return err
		}
		if old, err = r.decodeDevice(id, read); err != nil {
			return err
		}
		if out, err = change(rd, old); err != nil {
			return err
		}
		if rec, err = r.encodeDevice(out); err != nil {
			return err
		}
		ev, err = r.encodeDeviceChange(rd, old, out)
		return err
	})
	if errors.Is(err, kv.ErrNotFound) {
		return nil, &NotFoundError{Kind: EntityDevice, ID: id}
	}
	if err != nil {
		return nil, err
	}
	err = r.write(ctx, func(w Writer) error {
		cur, err := w.Get(deviceKey(id))
		if errors.Is(err, kv.ErrNotFound) {
			return &NotFoundError{Kind: EntityDevice, ID: id}
		}
		if err != nil {
			return fmt.Errorf("read device %s: %w", id, err)
		}
		if bytes.Equal(cur, read) {
			// Only fingerprints are unique among the changes fn may make.
			if err := newFingerprintsFree(w, old, out); err != nil {
				return err
			}
		} else { // changed since it was read: decide on the stored record
			if old, err = r.decodeDevice(id, cur); err != nil {
				return err
			}
			if out, err = change(w, old); err != nil {
				return err
			}
			if rec, err = r.encodeDevice(out); err != nil {
				return err
			}
			if ev, err = r.encodeDeviceChange(w, old, out); err != nil {
				return err
			}
		}
		if err := r.putDeviceRecord(w, old, out, rec, &ev); err != nil {
			return err
		}
		cacheDevice(w, out)
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.fillStatus(out)
	return out, nil
}

// newFingerprintsFree checks that the fingerprints d gained over old
// belong to no other device.
func newFingerprintsFree(rd Reader, old, d *Device) error {
	for _, fp := range []string{d.Auth.Fingerprint, d.Auth.SecondaryFingerprint} {
		if fp == "" || fp == old.Auth.Fingerprint || fp == old.Auth.SecondaryFingerprint {
			continue
		}
		if err := absent(rd, fingerprintKey(fp), UniqueFingerprint, fp); err != nil {
			return err
		}
	}
	return nil
}

// DeleteDevice removes a device, its indexes and its sessions. A gateway
// with sub-devices cannot be deleted.
func (r *Registry) DeleteDevice(ctx context.Context, project, id string) error {
	return r.deleteDeviceIf(ctx, id, func(d *Device) error {
		if project != "" && d.ProjectID != project {
			return &NotFoundError{Kind: EntityDevice, ID: id}
		}
		return nil
	})
}

// deleteDeviceIf deletes a device if check, given the stored device in
// the delete's transaction, returns nil.
func (r *Registry) deleteDeviceIf(ctx context.Context, id string, check func(*Device) error) error {
	// Read first: on a cluster the delete deletes the session record.
	remote, isRemote := r.sessionElsewhere(ctx, id)
	var gone *Device
	err := r.write(ctx, func(w Writer) error {
		d, err := r.getDevice(w, id)
		if err != nil {
			return err
		}
		if err := check(d); err != nil {
			return err
		}
		gone = d
		return r.deleteDevice(w, d)
	})
	if err != nil {
		return err
	}
	if gone.GatewayID != "" {
		r.router.subDevicesChanged(gone.GatewayID, SubDeviceChange{Deleted: true, Devices: []*Device{gone}})
	}
	r.dropSession(ctx, id)
	r.kickEverywhere(ctx, id, "device deleted", remote, isRemote)
	return nil
}

var errHasSubDevices = errors.New("gateway still has sub-devices")

func (r *Registry) deleteDevice(w Writer, d *Device) error {
	hasChildren := false
	if err := w.Scan(gatewayDevicesPrefix(d.DeviceID), nil, false, func(_, _ []byte) (bool, error) {
		hasChildren = true
		return false, nil
	}); err != nil {
		return err
	}
	if hasChildren {
		return invalid("device_id", "%s", errHasSubDevices)
	}
	coap, err := ownsNodeIndex(w, d)
	if err != nil {
		return err
	}
	if err := deleteIndexes(w, ownedIndexes(d, coap)); err != nil {
		return err
	}
	if err := countDevice(w, d, -1); err != nil {
		return err
	}
	if err := deleteDeviceData(w, d.DeviceID); err != nil {
		return err
	}
	if err := leaveGroups(w, d.DeviceID); err != nil {
		return err
	}
	if err := w.Delete(statusTimeKey(d.DeviceID)); err != nil {
		return err
	}
	if err := r.deleteDeviceSession(w, d.DeviceID); err != nil {
		return err
	}
	if r.node != "" { // a cluster's session record (StorePresence) goes with it
		if err := w.Delete(presenceKey(d.DeviceID)); err != nil {
			return err
		}
	}
	return r.putDevice(w, d, nil)
}

// SecretSlot names the primary or secondary credential.
type SecretSlot string

// The credential slots of reset secret / reset fingerprint.
const (
	Primary   SecretSlot = "PRIMARY"
	Secondary SecretSlot = "SECONDARY"
)

// ResetSecret sets (or, when secret is empty, generates) a device secret.
// With forceDisconnect the device's live sessions are dropped.
func (r *Registry) ResetSecret(ctx context.Context, project, id string, slot SecretSlot, secret string, forceDisconnect bool) (string, error) {
	if secret == "" {
		secret = NewSecret()
	} else if err := checkSecret("secret", secret); err != nil {
		return "", err
	}
	err := r.resetCredential(ctx, project, id, slot, "secret", AuthSecret, forceDisconnect, func(a *AuthInfo, primary bool) {
		if primary {
			a.Secret = secret
		} else {
			a.SecondarySecret = secret
		}
	})
	return secret, err
}

// ResetFingerprint sets or (fp empty) clears a certificate fingerprint; a
// cleared primary fingerprint is learned again at the next connection.
func (r *Registry) ResetFingerprint(ctx context.Context, project, id string, slot SecretSlot, fp string, forceDisconnect bool) (string, error) {
	fp, err := normFingerprint("fingerprint", fp)
	if err != nil {
		return "", err
	}
	err = r.resetCredential(ctx, project, id, slot, "fingerprint", AuthCertificates, forceDisconnect, func(a *AuthInfo, primary bool) {
		if primary {
			a.Fingerprint = fp
		} else {
			a.SecondaryFingerprint = fp
		}
	})
	return fp, err
}

// resetCredential replaces the primary or secondary credential (what)
// of a device that authenticates with typ.
func (r *Registry) resetCredential(ctx context.Context, project, id string, slot SecretSlot, what string, typ AuthType,
	forceDisconnect bool, set func(a *AuthInfo, primary bool)) error {
	if slot == "" {
		slot = Primary
	}
	if slot != Primary && slot != Secondary {
		return invalid(what+"_type", "must be PRIMARY or SECONDARY")
	}
	_, err := r.mutateDevice(ctx, project, id, func(d *Device) error {
		if d.Auth.Type != typ {
			return invalid(what, "device %s does not authenticate with a %s (auth_type %s)", id, what, d.Auth.Type)
		}
		set(&d.Auth, slot == Primary)
		return nil
	})
	if err != nil {
		return err
	}
	if forceDisconnect {
		remote, isRemote := r.sessionElsewhere(ctx, id)
		r.kickEverywhere(ctx, id, what+" reset", remote, isRemote)
	}
	return nil
}

// LearnFingerprint records the fingerprint of the first certificate a
// CERTIFICATES device without one connects with. It fails if the device
// has gained a fingerprint meanwhile.
func (r *Registry) LearnFingerprint(ctx context.Context, id, fp string) error {
	fp, err := normFingerprint("fingerprint", fp)
	if err != nil {
		return err
	}
	_, err = r.mutateDevice(ctx, "", id, func(d *Device) error {
		if d.Auth.Type != AuthCertificates {
			return invalid("fingerprint", "device %s authenticates with a secret", id)
		}
		if d.Auth.Fingerprint != "" && d.Auth.Fingerprint != fp {
			return invalid("fingerprint", "device %s already has a fingerprint", id)
		}
		d.Auth.Fingerprint = fp
		return nil
	})
	return err
}

// SetFrozen freezes or unfreezes a device. A frozen device cannot connect
// and its sessions are dropped.
func (r *Registry) SetFrozen(ctx context.Context, project, id string, frozen bool) error {
	_, err := r.mutateDevice(ctx, project, id, func(d *Device) error {
		d.Frozen = frozen
		return nil
	})
	if err == nil && frozen {
		remote, isRemote := r.sessionElsewhere(ctx, id)
		r.dropSession(ctx, id)
		r.kickEverywhere(ctx, id, "device frozen", remote, isRemote)
	}
	return err
}
