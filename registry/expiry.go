package registry

import (
	"context"
	"errors"
	"math"
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
	return r.sweep(r.expiryFloor, parseExpiryKey, func(due []string, now time.Time) (int, error) {
		var deleted []string
		err := r.write(ctx, func(w Writer) error {
			deleted = deleted[:0]
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
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		for _, id := range deleted {
			r.log.Info("device deleted: not connected within its timeout", "device_id", id)
			r.kick(id, "registration timeout")
		}
		return len(deleted), nil
	})
}

// sweep hands the ids due in f's deadline index to apply, at most
// sweepBatch at a time, until fewer are left, then raises f's floor to
// the first deadline left (see deadlineFloor). It returns the sum of what
// apply returned. Sweeps of one index take turns.
func (r *Registry) sweep(f *deadlineFloor, parse func([]byte) (time.Time, string, bool),
	apply func(due []string, now time.Time) (int, error)) (int, error) {
	f.sweep.Lock()
	defer f.sweep.Unlock()
	total := 0
	for {
		now := r.now()
		due, next, err := r.dueIDs(f, parse, now)
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
			f.raise(next)
			return total, nil
		}
	}
}

// dueIDs reads the ordered deadline index of f from f's floor and returns
// the ids due at now, at most sweepBatch, and the deadline of the first
// entry not due (math.MaxInt64 when there is none, math.MinInt64 when it
// is not known): it stops there, so a sweep costs what is due, not what
// is stored nor what was deleted before (see deadlineFloor). The caller
// holds f.sweep.
func (r *Registry) dueIDs(f *deadlineFloor, parse func([]byte) (time.Time, string, bool), now time.Time) (due []string, next int64, err error) {
	from := f.read()
	next = math.MaxInt64
	err = r.store.View(func(rd Reader) error {
		return rd.Scan(f.prefix, from, false, func(k, _ []byte) (bool, error) {
			at, id, ok := parse(k)
			if !ok {
				next = math.MinInt64
				return false, nil
			}
			if at.After(now) {
				next = at.UnixNano()
				return false, nil
			}
			due = append(due, id)
			if len(due) == sweepBatch {
				next = math.MinInt64
				return false, nil
			}
			return true, nil
		})
	})
	return due, next, err
}
