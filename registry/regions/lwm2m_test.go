package regions

import (
	"context"
	"errors"
	"testing"

	"github.com/iotgate/iotgate/registry"
)

// DeviceByEndpoint resolves a node id, as lwm2m.RegistrySecurity does.
func (f *fakeRegistry) DeviceByEndpoint(_ context.Context, ep string) (*registry.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.devices {
		if d.NodeID == ep {
			c := *d
			return &c, nil
		}
	}
	return nil, &registry.NotFoundError{Kind: registry.EntityNode, ID: ep}
}

func TestCentreLwM2MBootstrap(t *testing.T) {
	w := newTestWorld(t)
	ctx := context.Background()
	w.regs["cn"].add("pkUS", "imei1", "00112233")
	w.regs["cn"].add("pkCN", "imei2", "")
	w.regs["cn"].devices["pkCN_imei2"].Auth = registry.AuthInfo{Type: registry.AuthCertificates}

	var pe *ParamError
	if _, _, err := w.centre.LwM2MBootstrap(ctx, fromCN, ""); !errors.As(err, &pe) {
		t.Fatalf("empty endpoint: %v", err)
	}
	if _, _, err := w.centre.LwM2MBootstrap(ctx, fromCN, "nobody"); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("unknown endpoint: %v", err)
	}
	for range 2 { // first contact (transferred by the product rule), then from the directory
		a, ep, err := w.centre.LwM2MBootstrap(ctx, fromCN, "imei1")
		if err != nil || ep.MQTTHost != "us.example" || a.DeviceID != "pkUS_imei1" || a.Secret != "00112233" {
			t.Fatalf("bootstrap: %v, %+v at %+v", err, a, ep)
		}
	}
	if !w.regs["us"].has("pkUS_imei1") {
		t.Fatal("the product rule's region does not hold the device")
	}
	e, err := NewDirectory(w.store).Get(ctx, "pkUS", "imei1")
	if err != nil || e.Region != "us" {
		t.Fatalf("directory: %+v, %v", e, err)
	}
	// A device without a secret gets none (and stays in the default region).
	a, ep, err := w.centre.LwM2MBootstrap(ctx, fromCN, "imei2")
	if err != nil || ep.MQTTHost != "cn.example" || a.Secret != "" {
		t.Fatalf("bootstrap of a device without a secret: %v, %+v at %+v", err, a, ep)
	}
	// Deleted in its region by its operator and made again in another:
	// assigned afresh, with the new copy's secret.
	w.regs["cn"].add("pkCN", "imei3", "aa")
	if _, ep, err := w.centre.LwM2MBootstrap(ctx, fromCN, "imei3"); err != nil || ep.MQTTHost != "cn.example" {
		t.Fatalf("bootstrap: %v at %+v", err, ep)
	}
	_ = w.regs["cn"].DeleteDevice(ctx, "proj", "pkCN_imei3")
	w.regs["us"].add("pkCN", "imei3", "bb")
	if a, ep, err := w.centre.LwM2MBootstrap(ctx, fromUS, "imei3"); err != nil || ep.MQTTHost != "us.example" || a.Secret != "bb" {
		t.Fatalf("bootstrap of a device made again: %v, %+v at %+v", err, a, ep)
	}
	// A region without an LwM2M server knows no endpoint.
	if _, err := (&Local{Registry: w.regs["cn"]}).LwM2MDevice(ctx, "imei2"); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("region without LwM2M: %v", err)
	}
}
