package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
)

// sweepBatch bounds how many expired devices one write deletes.
const sweepBatch = 256

// SweepExpired deletes every device whose unconnected-registration
// deadline has passed, reading the ordered deadline index from its floor
// and stopping at the first deadline still in the future: the cost is
// proportional to the devices due, not to the fleet. It returns how many
// devices it deleted.
func (r *Registry) SweepExpired(ctx context.Context) (int, error) {
	return r.sweep(ctx, expiryPrefix, parseExpiryKey, func(due []string, now time.Time) (int, error) {
		var (
			deleted []string
			subs    []*Device // deleted sub-devices, whose gateways are told
		)
		err := r.write(ctx, func(w Writer) error {
			deleted, subs = deleted[:0], subs[:0]
			for _, id := range due {
				d, err := r.getDevice(w, id)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				// Re-check under the writer: a connection may have
				// activated the device since the scan.
				if d.ExpireAt.IsZero() || d.ExpireAt.After(now) || !d.ActiveTime.IsZero() {
					continue
				}
				if err := r.deleteDevice(w, d); err != nil {
					var ve *ValidationError
					if errors.As(err, &ve) {
						// A gateway whose sub-devices outlive it stays;
						// drop only its deadline.
						old := *d
						d.ExpireAt = time.Time{}
						if err := r.putDevice(w, &old, d); err != nil {
							return err
						}
						continue
					}
					return err
				}
				deleted = append(deleted, id)
				if d.GatewayID != "" {
					subs = append(subs, d)
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		for _, d := range subs {
			r.router.subDevicesChanged(d.GatewayID, SubDeviceChange{Deleted: true, Devices: []*Device{d}})
		}
		for _, id := range deleted {
			r.log.Info("device deleted: not connected within its timeout", "device_id", id)
			r.kick(id, "registration timeout")
		}
		return len(deleted), nil
	})
}

// sweep hands the ids due in the ordered deadline index under prefix to
// apply, at most sweepBatch at a time, until fewer are left. It returns
// the sum of what apply returned.
func (r *Registry) sweep(ctx context.Context, prefix []byte, parse func([]byte) (time.Time, string, bool),
	apply func(due []string, now time.Time) (int, error)) (int, error) {
	total := 0
	for {
		now := r.now()
		due, err := r.dueIDs(ctx, prefix, parse, now)
		if err != nil {
			return total, err
		}
		if len(due) > 0 {
			n, err := apply(due, now)
			total += n
			if err != nil {
				return total, err
			}
		}
		if len(due) < sweepBatch {
			return total, nil
		}
	}
}

// dueIDs reads the ordered deadline index under prefix from its start and
// returns the ids due at now, at most sweepBatch: it stops at the first
// entry not due, so a sweep costs what is due, not what is stored. (What
// was deleted before is the engine's to skip: see badgerkv's queues.)
func (r *Registry) dueIDs(ctx context.Context, prefix []byte, parse func([]byte) (time.Time, string, bool), now time.Time) (due []string, err error) {
	err = r.view(ctx, func(rd Reader) error {
		return rd.Scan(prefix, nil, false, func(k, _ []byte) (bool, error) {
			at, id, ok := parse(k)
			if !ok {
				return false, fmt.Errorf("corrupt deadline key %q", bytes.Clone(k))
			}
			if at.After(now) {
				return false, nil
			}
			due = append(due, id)
			return len(due) < sweepBatch, nil
		})
	})
	return due, err
}
