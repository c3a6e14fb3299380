package registry

import (
	"context"
	"errors"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
)

// TestCreateDeviceWith: what also writes commits with the device; an
// error from also refuses the create, leaving neither.
func TestCreateDeviceWith(t *testing.T) {
	r, st := newTestRegistry(t, nil)
	mustProduct(t, r, "p1", "prod", "MQTT")
	ctx := context.Background()
	mark := []byte("test\x00mark")
	refused := errors.New("refused by the caller")
	tests := []struct {
		name    string
		node    string
		also    func(Writer, *Device) error
		wantErr error
		created bool
	}{
		{"also writes", "n1", func(w Writer, d *Device) error { return w.Set(mark, []byte(d.DeviceID)) }, nil, true},
		{"also refuses", "n2", func(w Writer, d *Device) error {
			if err := w.Set(mark, []byte(d.DeviceID)); err != nil {
				return err
			}
			return refused
		}, refused, false},
		{"no also", "n3", nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.CreateDeviceWith(ctx, NewDevice{ProjectID: "p1", NodeID: tt.node, ProductID: "prod"}, tt.also)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			_, derr := r.Device(ctx, "prod_"+tt.node)
			if (derr == nil) != tt.created {
				t.Fatalf("device created %v, want %v", derr == nil, tt.created)
			}
			if tt.also == nil {
				return
			}
			var got []byte
			if err := st.View(ctx, func(rd kv.Reader) error { got, _ = rd.Get(mark); return nil }); err != nil {
				t.Fatal(err)
			}
			if (string(got) == "prod_"+tt.node) != tt.created {
				t.Fatalf("also's write %q kept: %v, want %v", got, !tt.created, tt.created)
			}
		})
	}
}
