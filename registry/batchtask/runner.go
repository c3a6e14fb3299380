package batchtask

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
	"golang.org/x/time/rate"
)

// leaseName is the lease whose holder runs every task on a cluster.
const leaseName = "batchtasks"

// initTimeout is how long a task may stay Initializing before the runner
// takes its creator for dead and fails it.
const initTimeout = time.Minute

// job is one item handed to a worker.
type job struct {
	task *Task
	item Item
	kind Kind
	done func(error)
}

// Run runs tasks until ctx ends: a fixed pool of Limits.Workers
// goroutines does the items; one loop (this one) picks them, a chunk of a
// task at a time, tasks taking turns, while this node holds the lease.
func (s *Service) Run(ctx context.Context) {
	jobs := make(chan job)
	var wg sync.WaitGroup
	limiter := rate.NewLimiter(rate.Limit(s.limits.Rate), max(1, s.limits.Workers))
	for w := range s.limits.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work(ctx, strconv.Itoa(w), limiter, jobs)
		}()
	}
	defer wg.Wait()
	defer close(jobs)
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		s.round(ctx, jobs)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// work runs the jobs of one worker; slot names its counters.
func (s *Service) work(ctx context.Context, slot string, limiter *rate.Limiter, jobs <-chan job) {
	for j := range jobs {
		if err := limiter.Wait(ctx); err != nil {
			j.done(err)
			continue
		}
		j.done(s.runItem(ctx, j.kind, j.task, j.item, slot))
	}
}

// recorder is the Recorder of one item.
type recorder struct {
	s     *Service
	task  string
	index int
	slot  string
}

func (r recorder) Within(w kv.Writer, o Outcome) error {
	_, err := r.s.setItem(w, r.task, r.index, r.slot, o)
	return err
}

// runItem does one item and records its outcome (unless the kind did,
// with its effect).
func (s *Service) runItem(ctx context.Context, k Kind, t *Task, it Item, slot string) error {
	o, err := k.Do(ctx, t, &it, recorder{s: s, task: t.ID, index: it.Index, slot: slot})
	if err != nil {
		return fmt.Errorf("batch task %s item %d: %w", t.ID, it.Index, err)
	}
	switch o.Status {
	case ItemSuccess, ItemFail, ItemProcessing:
	default:
		return fmt.Errorf("batch task %s item %d: kind %s gave outcome %q", t.ID, it.Index, t.Type, o.Status)
	}
	return s.update(ctx, func(w kv.Txn) error {
		_, err := s.setItem(w, t.ID, it.Index, slot, o)
		return err
	})
}

// round runs tasks while this node holds the lease and there is work,
// renewing the lease between chunks.
func (s *Service) round(ctx context.Context, jobs chan<- job) {
	for ctx.Err() == nil {
		held, err := s.lease.Hold(ctx, leaseName, 3*s.poll)
		if err != nil && ctx.Err() == nil {
			s.log.Error("batch task lease", "err", err)
		}
		if !held {
			return
		}
		ids, err := s.activeTasks(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("batch tasks: list active tasks", "err", err)
			}
			return
		}
		progressed := false
		renewAt := time.Now().Add(s.poll)
		for _, id := range ids {
			did, err := s.step(ctx, id, jobs)
			if err != nil && ctx.Err() == nil {
				s.log.Error("batch task step failed; retried later", "task_id", id, "err", err)
			}
			progressed = progressed || did
			if time.Now().After(renewAt) {
				break
			}
		}
		if !progressed {
			return
		}
	}
}

func (s *Service) activeTasks(ctx context.Context) ([]string, error) {
	var ids []string
	err := s.view(ctx, func(rd kv.Reader) error {
		p := prefix(famActive)
		return rd.Scan(p, nil, false, func(k, _ []byte) (bool, error) {
			ids = append(ids, string(k[len(p):]))
			return true, nil
		})
	})
	return ids, err
}

// step does one chunk of a task's work and reports whether it did any.
func (s *Service) step(ctx context.Context, id string, jobs chan<- job) (bool, error) {
	var t Task
	err := s.view(ctx, func(rd kv.Reader) error { return getJSON(rd, taskKey(id), &t) })
	if errors.Is(err, kv.ErrNotFound) {
		return true, s.update(ctx, func(w kv.Txn) error { return w.Delete(activeKey(id)) })
	}
	if err != nil {
		return false, err
	}
	switch t.Status {
	case statusDeleting:
		return true, s.purge(ctx, id)
	case StatusInitializing:
		s.mu.Lock()
		ours := s.initializing[id]
		s.mu.Unlock()
		if ours || s.now().Sub(t.Created) < initTimeout {
			return false, nil
		}
		return true, s.end(ctx, id, StatusFail, "the task was not fully created (its creator stopped); create it again")
	case StatusStopping:
		return s.stopChunk(ctx, &t)
	case StatusWaiting, StatusProcessing:
		return s.runChunk(ctx, &t, jobs)
	}
	// Ended: nothing left but the entry.
	return true, s.update(ctx, func(w kv.Txn) error { return w.Delete(activeKey(id)) })
}

// waitingItems reads up to n waiting items of t from its cursor, and the
// index the scan reached.
func (s *Service) waitingItems(ctx context.Context, t *Task, n int) ([]Item, int, error) {
	var items []Item
	next := t.Cursor
	err := s.view(ctx, func(rd kv.Reader) error {
		return rd.Scan(prefix(famItem, t.ID), itemKey(t.ID, t.Cursor), false, func(k, v []byte) (bool, error) {
			var it Item
			if err := jsonUnmarshal(k, v, &it); err != nil {
				return false, err
			}
			idx, err := itemIndex(t.ID, k)
			if err != nil {
				return false, err
			}
			next = idx + 1
			if it.Status == ItemWaiting {
				it.Index = idx
				items = append(items, it)
			}
			return len(items) < n, nil
		})
	})
	return items, next, err
}

// chunk is how many items the runner takes at a time: Limits.Chunk, or
// fewer if the rate would make a chunk outlast the lease (3 polls).
func (s *Service) chunk() int {
	return max(1, min(s.limits.Chunk, int(s.limits.Rate*s.poll.Seconds())))
}

// runChunk runs a chunk of t's waiting items on the workers, then moves
// its cursor past those that have an outcome; with none left it ends t
// once no item is processing.
func (s *Service) runChunk(ctx context.Context, t *Task, jobs chan<- job) (bool, error) {
	items, next, err := s.waitingItems(ctx, t, s.chunk())
	if err != nil {
		return false, err
	}
	if len(items) == 0 {
		return s.finishIfDone(ctx, t)
	}
	if t.Status == StatusWaiting {
		if err := s.setStatus(ctx, t.ID, StatusWaiting, StatusProcessing); err != nil {
			return false, err
		}
	}
	kind := s.kinds[t.Type]
	if kind == nil {
		return true, s.end(ctx, t.ID, StatusFail, "task type "+t.Type+" is not served by this version")
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		retryAt  = next
	)
	for _, it := range items {
		wg.Add(1)
		j := job{task: t, item: it, kind: kind, done: func(err error) {
			defer wg.Done()
			if err == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			retryAt = min(retryAt, it.Index)
			if firstErr == nil {
				firstErr = err
			}
		}}
		select {
		case jobs <- j:
		case <-ctx.Done():
			wg.Done()
			wg.Wait()
			return false, ctx.Err()
		}
	}
	wg.Wait()
	err = s.update(ctx, func(w kv.Txn) error {
		cur, err := getTask(w, "", t.ID)
		if err != nil {
			return err
		}
		if cur.Rewinds == t.Rewinds {
			cur.Cursor = max(cur.Cursor, retryAt)
		}
		return putJSON(w, taskKey(t.ID), cur)
	})
	return true, errors.Join(firstErr, err)
}

// finishIfDone ends t when none of its items is waiting or processing,
// deciding in the transaction that ends it (a retry may have put an item
// back meanwhile).
func (s *Service) finishIfDone(ctx context.Context, t *Task) (bool, error) {
	ended := false
	err := s.update(ctx, func(w kv.Txn) error {
		ended = false
		cur, err := getTask(w, "", t.ID)
		if err != nil {
			return err
		}
		if cur.Status != StatusWaiting && cur.Status != StatusProcessing {
			return nil
		}
		p, err := progress(w, cur)
		if err != nil || p.Processing > 0 || p.Waiting > 0 {
			return err
		}
		st := StatusPartialSuccess
		switch {
		case p.Fail == 0 && p.Stopped == 0:
			st = StatusSuccess
		case p.Success == 0 && p.Stopped == 0:
			st = StatusFail
		case p.Stopped > 0:
			st = StatusStopped
		}
		cur.Status, cur.StatusMsg = st, ""
		if err := putJSON(w, taskKey(t.ID), cur); err != nil {
			return err
		}
		ended = true
		return w.Delete(activeKey(t.ID))
	})
	return ended, err
}

// stopChunk marks a chunk of a stopping task's waiting items Stopped; with
// none left, the task is Stopped once its processing items are done.
func (s *Service) stopChunk(ctx context.Context, t *Task) (bool, error) {
	items, next, err := s.waitingItems(ctx, t, itemsPerWrite)
	if err != nil {
		return false, err
	}
	if len(items) == 0 {
		var p Progress
		if err := s.view(ctx, func(rd kv.Reader) error { p, err = progress(rd, t); return err }); err != nil {
			return false, err
		}
		if p.Processing > 0 {
			return false, nil
		}
		return true, s.end(ctx, t.ID, StatusStopped, "stopped by request")
	}
	return true, s.update(ctx, func(w kv.Txn) error {
		for _, it := range items {
			if _, err := s.setItem(w, t.ID, it.Index, finishSlot, Outcome{Status: ItemStopped}); err != nil {
				return err
			}
		}
		cur, err := getTask(w, "", t.ID)
		if err != nil {
			return err
		}
		cur.Cursor = max(cur.Cursor, next)
		return putJSON(w, taskKey(t.ID), cur)
	})
}

// setStatus moves a task from one status to another (if it is still in
// the first).
func (s *Service) setStatus(ctx context.Context, id string, from, to Status) error {
	return s.update(ctx, func(w kv.Txn) error {
		t, err := getTask(w, "", id)
		if err != nil || t.Status != from {
			return err
		}
		t.Status = to
		return putJSON(w, taskKey(id), t)
	})
}

// end gives a task its final status and takes it off the runner's list.
func (s *Service) end(ctx context.Context, id string, st Status, desc string) error {
	return s.update(ctx, func(w kv.Txn) error {
		t, err := getTask(w, "", id)
		if err != nil {
			return err
		}
		t.Status, t.StatusMsg = st, desc
		if err := putJSON(w, taskKey(id), t); err != nil {
			return err
		}
		return w.Delete(activeKey(id))
	})
}

// purge deletes a chunk of a deleted task's items, and the task once
// they are gone.
func (s *Service) purge(ctx context.Context, id string) error {
	return s.update(ctx, func(w kv.Txn) error {
		var keys [][]byte
		for _, p := range [][]byte{prefix(famItem, id), prefix(famTarget, id), prefix(famCount, id)} {
			err := w.Scan(p, nil, false, func(k, _ []byte) (bool, error) {
				keys = append(keys, append([]byte(nil), k...))
				return len(keys) < itemsPerWrite, nil
			})
			if err != nil {
				return err
			}
			if len(keys) >= itemsPerWrite {
				break
			}
		}
		for _, k := range keys {
			if err := w.Delete(k); err != nil {
				return err
			}
		}
		if len(keys) < itemsPerWrite {
			if err := w.Delete(taskKey(id)); err != nil {
				return err
			}
			return w.Delete(activeKey(id))
		}
		return nil
	})
}
