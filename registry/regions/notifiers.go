package regions

import (
	"context"
	"errors"

	"github.com/iotgate/iotgate/registry"
)

// Notifiers is a Notifier over several servers (MQTT, LwM2M): the
// device is told by the one it is connected to, the first that does not
// answer registry.ErrNotConnected.
type Notifiers []Notifier

// NotifyBootstrap implements Notifier.
func (ns Notifiers) NotifyBootstrap(ctx context.Context, d *registry.Device) error {
	for _, n := range ns {
		if err := n.NotifyBootstrap(ctx, d); !errors.Is(err, registry.ErrNotConnected) {
			return err
		}
	}
	return registry.ErrNotConnected
}
