package regions

import (
	"context"
	"errors"
	"testing"

	"github.com/iotgate/iotgate/registry"
)

type notifierFunc func() error

func (f notifierFunc) NotifyBootstrap(context.Context, *registry.Device) error { return f() }

func TestNotifiers(t *testing.T) {
	boom := errors.New("boom")
	offline := notifierFunc(func() error { return registry.ErrNotConnected })
	told := notifierFunc(func() error { return nil })
	failed := notifierFunc(func() error { return boom })
	for _, tc := range []struct {
		name string
		ns   Notifiers
		want error
	}{
		{"none", nil, registry.ErrNotConnected},
		{"connected to none", Notifiers{offline, offline}, registry.ErrNotConnected},
		{"connected to the second", Notifiers{offline, told}, nil},
		{"the first that knows the device answers", Notifiers{failed, told}, boom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.ns.NotifyBootstrap(context.Background(), &registry.Device{}); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
