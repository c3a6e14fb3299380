package registry

import (
	"context"
	"fmt"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
)

// A listing by product and node id reads the one device through the
// product's node index, whatever the product holds, and still applies
// the other filters and the page.
func TestListDevicesByNode(t *testing.T) {
	var counter *getCounter
	r, _ := newTestRegistryOn(t, nil, func(s kv.Store) kv.Store { counter = &getCounter{Store: s}; return counter })
	ctx := context.Background()
	mustProduct(t, r, "proj", "prod", "MQTT")
	mustProduct(t, r, "other", "theirs", "MQTT")
	for i := range 200 {
		if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: fmt.Sprint("n", i),
			DeviceName: fmt.Sprint("name", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "other", ProductID: "theirs", NodeID: "n7"}); err != nil {
		t.Fatal(err)
	}
	n7, err := r.DeviceByProductNode(ctx, "prod", "n7")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		project string
		f       DeviceFilter
		pg      Page
		count   int64
		devices int
	}{
		{"found", "proj", DeviceFilter{ProductID: "prod", NodeID: "n7"}, Page{Limit: 10}, 1, 1},
		{"its name too", "proj", DeviceFilter{ProductID: "prod", NodeID: "n7", DeviceName: "name7"}, Page{Limit: 10}, 1, 1},
		{"another name", "proj", DeviceFilter{ProductID: "prod", NodeID: "n7", DeviceName: "name8"}, Page{Limit: 10}, 0, 0},
		{"another gateway", "proj", DeviceFilter{ProductID: "prod", NodeID: "n7", GatewayID: "gw"}, Page{Limit: 10}, 0, 0},
		{"no such node", "proj", DeviceFilter{ProductID: "prod", NodeID: "n999"}, Page{Limit: 10}, 0, 0},
		{"another project's product", "proj", DeviceFilter{ProductID: "theirs", NodeID: "n7"}, Page{Limit: 10}, 0, 0},
		{"offset past it", "proj", DeviceFilter{ProductID: "prod", NodeID: "n7"}, Page{Limit: 10, Offset: 1}, 1, 0},
		{"marker at it", "proj", DeviceFilter{ProductID: "prod", NodeID: "n7"}, Page{Limit: 10, Marker: n7.Seq}, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := counter.views.Load()
			l, err := r.ListDevices(ctx, tt.project, tt.f, tt.pg)
			if err != nil {
				t.Fatal(err)
			}
			if l.Count != tt.count || len(l.Devices) != tt.devices {
				t.Fatalf("count %d, %d devices; want %d and %d", l.Count, len(l.Devices), tt.count, tt.devices)
			}
			if tt.devices == 1 && (l.Devices[0].DeviceID != n7.DeviceID || l.Devices[0].Status == "") {
				t.Fatalf("listed %+v, want %s with its status", l.Devices[0], n7.DeviceID)
			}
			if got := counter.views.Load() - before; got > 1 {
				t.Fatalf("%d device records read for one node id, want at most 1", got)
			}
		})
	}
}
