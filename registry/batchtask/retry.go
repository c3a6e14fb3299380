package batchtask

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv"
)

// RetryKind is a Kind whose failed items may be tried again (IoTDA
// retries firmware and software upgrades).
type RetryKind interface {
	Kind
	Retries()
}

func (firmwareUpgrade) Retries() {}

// MaxRetryTargets bounds the targets of one retry (IoTDA's bound).
const MaxRetryTargets = 100

// ErrNotRetryable refuses a retry of a task whose type has none.
var ErrNotRetryable = errors.New("the batch task's type cannot be retried")

// ErrNotRetrying refuses a retry of a task that is stopping, stopped or
// still being created.
var ErrNotRetrying = errors.New("the batch task is stopped or being created: it cannot be retried")

// RetryResult is what became of one target of a retry: Err nil when its
// item waits to be tried again.
type RetryResult struct {
	Target string
	Err    error
}

// NotFailedError refuses to retry an item that has not failed.
type NotFailedError struct {
	Target string
	Status ItemStatus
}

func (e *NotFailedError) Error() string {
	return fmt.Sprintf("target %s is %s: only failed targets are retried", e.Target, e.Status)
}

// Retry puts failed items of a task back to waiting, the task back to
// the runner: targets' items (at most MaxRetryTargets), or every failed
// item when targets is empty.
func (s *Service) Retry(ctx context.Context, project, id string, targets []string) ([]RetryResult, error) {
	if len(targets) > MaxRetryTargets {
		return nil, &registry.ValidationError{Field: "targets", Reason: fmt.Sprintf("must be at most %d", MaxRetryTargets)}
	}
	t, err := s.Task(ctx, project, id)
	if err != nil {
		return nil, err
	}
	if _, ok := s.kinds[t.Type].(RetryKind); !ok {
		return nil, fmt.Errorf("%w (%s)", ErrNotRetryable, t.Type)
	}
	if len(targets) > 0 {
		var res []RetryResult
		err := s.update(ctx, func(w kv.Txn) error {
			res = res[:0]
			var idx []int
			for _, target := range targets {
				i, err := s.failedItem(w, id, target)
				res = append(res, RetryResult{Target: target, Err: err})
				if err == nil {
					idx = append(idx, i)
				}
			}
			return s.rewind(w, project, id, idx)
		})
		s.poke()
		return res, err
	}
	// Every failed item, a write at a time.
	var res []RetryResult
	from := 0
	for {
		var batch []Item
		err := s.view(ctx, func(rd kv.Reader) error {
			batch = batch[:0]
			return rd.Scan(prefix(famItem, id), itemKey(id, from), false, func(k, v []byte) (bool, error) {
				var it Item
				if err := jsonUnmarshal(k, v, &it); err != nil {
					return false, err
				}
				var err error
				if it.Index, err = itemIndex(id, k); err != nil {
					return false, err
				}
				if it.Status == ItemFail {
					batch = append(batch, it)
				}
				return len(batch) < itemsPerWrite, nil
			})
		})
		if err != nil || len(batch) == 0 {
			s.poke()
			return res, err
		}
		err = s.update(ctx, func(w kv.Txn) error {
			var idx []int
			for _, it := range batch {
				if cur, err := getItem(w, id, it.Index); err != nil {
					return err
				} else if cur.Status == ItemFail {
					idx = append(idx, it.Index)
				}
			}
			return s.rewind(w, project, id, idx)
		})
		if err != nil {
			return res, err
		}
		for _, it := range batch {
			res = append(res, RetryResult{Target: it.Target})
		}
		from = batch[len(batch)-1].Index + 1
	}
}

// failedItem returns the index of target's item if it failed.
func (s *Service) failedItem(rd kv.Reader, task, target string) (int, error) {
	v, err := rd.Get(targetKey(task, target))
	if errors.Is(err, kv.ErrNotFound) {
		return 0, &NotFoundError{What: "batch task item", ID: task + "/" + target}
	}
	if err != nil || len(v) != 4 {
		return 0, fmt.Errorf("batch task %s: target index of %q: %v", task, target, err)
	}
	i := int(binary.BigEndian.Uint32(v))
	it, err := getItem(rd, task, i)
	if err != nil {
		return 0, err
	}
	if it.Status != ItemFail {
		return 0, &NotFailedError{Target: target, Status: it.Status}
	}
	return i, nil
}

// retrySlot is the counter slot Retry writes.
const retrySlot = "retry"

// rewind puts the failed items idx back to waiting, moves the task's
// cursor back to the first and the task back to the runner.
func (s *Service) rewind(w kv.Txn, project, id string, idx []int) error {
	if len(idx) == 0 {
		return nil
	}
	t, err := getTask(w, project, id)
	if err != nil {
		return err
	}
	switch t.Status {
	case StatusInitializing, StatusStopping, StatusStopped:
		return ErrNotRetrying
	}
	var c counts
	if err := getJSON(w, countKey(id, retrySlot), &c); err != nil && !errors.Is(err, kv.ErrNotFound) {
		return err
	}
	first := t.Cursor
	for _, i := range idx {
		it, err := getItem(w, id, i)
		if err != nil {
			return err
		}
		if it.Status != ItemFail {
			continue
		}
		c.add(ItemFail, -1)
		it.Status, it.Output, it.Error = ItemWaiting, "", nil
		if err := putJSON(w, itemKey(id, i), it); err != nil {
			return err
		}
		first = min(first, i)
	}
	if err := putJSON(w, countKey(id, retrySlot), c); err != nil {
		return err
	}
	t.Cursor, t.Rewinds, t.StatusMsg = first, t.Rewinds+1, ""
	if t.Status.Ended() {
		t.Status = StatusProcessing
	}
	if err := putJSON(w, taskKey(id), t); err != nil {
		return err
	}
	return w.Set(activeKey(id), nil)
}
