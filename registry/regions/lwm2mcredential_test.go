package regions

import (
	"context"
	"errors"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
)

// The handshake's credential look-up finds the device wherever it is
// held and assigns nothing (the directory stays empty).
func TestCentreLwM2MCredential(t *testing.T) {
	w := newTestWorld(t)
	ctx := context.Background()
	w.regs["us"].add("pkUS", "imei1", "00112233")

	a, err := w.centre.LwM2MCredential(ctx, "imei1")
	if err != nil || a.DeviceID != "pkUS_imei1" || a.Secret != "00112233" {
		t.Fatalf("credential: %v, %+v", err, a)
	}
	if _, err := NewDirectory(w.store).Get(ctx, "pkUS", "imei1"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("the credential look-up assigned the device: %v", err)
	}
	if _, err := w.centre.LwM2MCredential(ctx, "nobody"); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("unknown identity: %v", err)
	}
	var pe *ParamError
	if _, err := w.centre.LwM2MCredential(ctx, ""); !errors.As(err, &pe) {
		t.Fatalf("empty identity: %v", err)
	}
}
