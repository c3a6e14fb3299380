package registry

import (
	"context"
	"testing"
)

// BenchmarkAddMessage stores uplink messages of one device, serially, so
// that every add beyond MessagesKept also drops the oldest.
func BenchmarkAddMessage(b *testing.B) {
	r, _ := filledRegistry(b, 1)
	ctx := context.Background()
	d, err := r.DeviceByNodeID(ctx, "imei000000000")
	if err != nil {
		b.Fatal(err)
	}
	m := Message{Topic: "/19/0/0", Payload: []byte("0123456789")}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.AddMessage(ctx, d.DeviceID, m); err != nil {
			b.Fatal(err)
		}
	}
}
