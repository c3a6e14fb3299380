package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// A device's shadow holds, per service, the properties the device last
// reported and the ones an application desires (IoTDA's desired and
// reported sections). Desired values that differ from the reported ones
// (the delta) are sent to the device as a properties set when it comes
// online, after each of its reports and when an application changes
// them while it is online (Router.syncDesired); a report that reaches
// them empties the delta. Each service's version counts the writes of
// its desired section, for applications' optimistic updates.

// ServiceShadow is one service's shadow.
type ServiceShadow struct {
	ServiceID string `json:"service_id"`
	// Properties are the reported properties, EventTime the time of the
	// last report (zero: none yet).
	Properties map[string]json.RawMessage `json:"properties"`
	EventTime  time.Time                  `json:"event_time"`
	// Desired are the properties an application wants the device to
	// take, DesiredTime when they were last written.
	Desired     map[string]json.RawMessage `json:"desired,omitempty"`
	DesiredTime time.Time                  `json:"desired_time,omitzero"`
	// Version counts the writes of Desired (0: never written).
	Version int64 `json:"version,omitempty"`
}

// Delta returns the desired properties whose reported value differs (or
// that were never reported); nil when there are none.
func (s *ServiceShadow) Delta() map[string]json.RawMessage {
	var d map[string]json.RawMessage
	for k, want := range s.Desired {
		if have, ok := s.Properties[k]; ok && sameJSON(have, want) {
			continue
		}
		if d == nil {
			d = make(map[string]json.RawMessage)
		}
		d[k] = want
	}
	return d
}

// sameJSON reports whether two JSON values are equal as values (1 and
// 1.0, or objects with their keys in another order, are).
func sameJSON(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// Shadow is a device's shadow, per service.
type Shadow struct {
	DeviceID string           `json:"device_id"`
	Services []*ServiceShadow `json:"services"`
}

// service returns the shadow of the service, added if it has none.
func (sh *Shadow) service(id string) *ServiceShadow {
	for _, s := range sh.Services {
		if s.ServiceID == id {
			return s
		}
	}
	s := &ServiceShadow{ServiceID: id}
	sh.Services = append(sh.Services, s)
	return s
}

// hasDesired reports whether any service has desired properties.
func (sh *Shadow) hasDesired() bool {
	for _, s := range sh.Services {
		if len(s.Desired) > 0 {
			return true
		}
	}
	return false
}

// hasDelta reports whether any service has a delta.
func (sh *Shadow) hasDelta() bool {
	for _, s := range sh.Services {
		if len(s.Delta()) > 0 {
			return true
		}
	}
	return false
}

// ServiceDelta is one service's delta, in the shape of a properties set's
// services entry.
type ServiceDelta struct {
	ServiceID  string                     `json:"service_id"`
	Properties map[string]json.RawMessage `json:"properties"`
}

// Deltas returns the services' deltas, in the shadow's order.
func (sh *Shadow) Deltas() []ServiceDelta {
	var out []ServiceDelta
	for _, s := range sh.Services {
		if d := s.Delta(); len(d) > 0 {
			out = append(out, ServiceDelta{ServiceID: s.ServiceID, Properties: d})
		}
	}
	return out
}

func getShadow(rd Reader, dev string) (*Shadow, error) {
	sh := &Shadow{DeviceID: dev}
	b, err := rd.Get(shadowKey(dev))
	if errors.Is(err, kv.ErrNotFound) {
		return sh, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, sh); err != nil {
		return nil, fmt.Errorf("decode shadow of %s: %w", dev, err)
	}
	return sh, nil
}

func putShadow(w Writer, sh *Shadow) error {
	b, err := json.Marshal(sh)
	if err != nil {
		return fmt.Errorf("encode shadow of %s: %w", sh.DeviceID, err)
	}
	return w.Set(shadowKey(sh.DeviceID), b)
}

// DeviceShadow returns a project device's shadow.
func (r *Registry) DeviceShadow(ctx context.Context, project, deviceID string) (*Shadow, error) {
	if _, err := r.ProjectDevice(ctx, project, deviceID); err != nil {
		return nil, err
	}
	return r.ShadowOf(ctx, deviceID)
}

// ShadowOf returns a device's shadow (a device asking for its own).
func (r *Registry) ShadowOf(ctx context.Context, deviceID string) (*Shadow, error) {
	var sh *Shadow
	err := r.view(ctx, func(rd Reader) error {
		var err error
		sh, err = getShadow(rd, deviceID)
		return err
	})
	return sh, err
}

// DesiredUpdate changes one service's desired properties.
type DesiredUpdate struct {
	ServiceID string
	// Desired holds the properties to set; a JSON null deletes one. An
	// empty map clears the service's desired section; nil is invalid.
	Desired map[string]json.RawMessage
	// Version, when set, must be the service's current version.
	Version *int64
}

// ShadowVersionError refuses a desired update given a version that is not
// the service's current one: the shadow changed since the application
// read it.
type ShadowVersionError struct {
	ServiceID string
	Given     int64
	Current   int64
}

func (e *ShadowVersionError) Error() string {
	return fmt.Sprintf("shadow version of service %s is %d, not %d: it changed since it was read", e.ServiceID, e.Current, e.Given)
}

// Limits of a desired update (IoTDA's service_id length; property names
// as the product model's).
const (
	maxShadowServiceID = 64
	maxPropertyName    = 64
)

// checkDesired validates updates: each names a distinct service and
// carries a desired object whose property names IoTDA accepts (no '.',
// '$' or NUL, which its shadow document cannot hold).
func checkDesired(ups []DesiredUpdate) error {
	if len(ups) == 0 {
		return invalid("shadow", "is required and must name at least one service")
	}
	seen := make(map[string]bool, len(ups))
	for i, u := range ups {
		field := fmt.Sprintf("shadow[%d]", i)
		switch {
		case u.ServiceID == "":
			return invalid(field+".service_id", "is required")
		case len(u.ServiceID) > maxShadowServiceID:
			return invalid(field+".service_id", "is longer than %d characters", maxShadowServiceID)
		case seen[u.ServiceID]:
			return invalid(field+".service_id", "%s is given twice", u.ServiceID)
		case u.Desired == nil:
			return invalid(field+".desired", "is required and must be a JSON object")
		case u.Version != nil && *u.Version < 0:
			return invalid(field+".version", "must not be negative")
		}
		seen[u.ServiceID] = true
		for k := range u.Desired {
			if k == "" || len(k) > maxPropertyName || strings.ContainsAny(k, ".$\x00") {
				return invalid(field+".desired", "property name %q must be 1 to %d characters without '.', '$' or NUL", k, maxPropertyName)
			}
		}
	}
	return nil
}

// isNull reports whether v is the JSON null.
func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// UpdateDesired writes desired properties into a project device's shadow,
// all services or none: a stale version refuses the whole update with a
// *ShadowVersionError. It returns the shadow as written. A device online
// is sent the new delta at once.
func (r *Registry) UpdateDesired(ctx context.Context, project, deviceID string, ups []DesiredUpdate) (*Shadow, error) {
	if err := checkDesired(ups); err != nil {
		return nil, err
	}
	if _, err := r.ProjectDevice(ctx, project, deviceID); err != nil {
		return nil, err
	}
	now := r.now().UTC()
	var sh *Shadow
	err := r.write(ctx, func(w Writer) error {
		if _, err := w.Get(deviceKey(deviceID)); err != nil {
			if errors.Is(err, kv.ErrNotFound) {
				return &NotFoundError{Kind: EntityDevice, ID: deviceID}
			}
			return err
		}
		var err error
		if sh, err = getShadow(w, deviceID); err != nil {
			return err
		}
		for _, u := range ups {
			s := sh.service(u.ServiceID)
			if u.Version != nil && *u.Version != s.Version {
				return &ShadowVersionError{ServiceID: u.ServiceID, Given: *u.Version, Current: s.Version}
			}
			if len(u.Desired) == 0 {
				s.Desired = nil
			}
			for k, v := range u.Desired {
				if isNull(v) {
					delete(s.Desired, k)
					continue
				}
				if s.Desired == nil {
					s.Desired = make(map[string]json.RawMessage)
				}
				s.Desired[k] = v
			}
			if len(s.Desired) == 0 {
				s.Desired = nil
			}
			s.Version++
			s.DesiredTime = now
		}
		if err := putShadow(w, sh); err != nil {
			return err
		}
		// The hint's entry, for the node a device connects to (and for
		// this one after a restart).
		if sh.hasDesired() {
			return w.Set(desiredKey(deviceID), nil)
		}
		return w.Delete(desiredKey(deviceID))
	})
	if err != nil {
		return nil, err
	}
	if sh.hasDesired() {
		r.router.desired.mark(deviceID)
	}
	if sh.hasDelta() {
		r.router.desiredDiffers(deviceID, false)
	}
	return sh, nil
}

// desiredKeyDevice returns the device of a desired-hint entry
// (sd/{device_id}), or false for other keys.
func desiredKeyDevice(k string) (string, bool) {
	family, dev, ok := cutPart(k)
	return dev, ok && family == famDesired && dev != ""
}

// loadDesiredHint marks every device with desired properties (at
// start-up, and when another node's notices may have been lost).
func (r *Registry) loadDesiredHint(ctx context.Context) error {
	return r.view(ctx, func(rd Reader) error {
		return rd.Scan(prefixKey(famDesired), nil, false, func(k, _ []byte) (bool, error) {
			dev, ok := desiredKeyDevice(string(k))
			if !ok {
				return false, fmt.Errorf("corrupt desired-hint key %q", bytes.Clone(k))
			}
			r.router.desired.mark(dev)
			return true, nil
		})
	})
}
