package batchtask

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv"
)

// maxConflictRetries bounds how often a write is re-run after the engine
// reported a conflict (another writer of the same task's record).
const maxConflictRetries = 32

// update runs fn in one transaction, re-running it after a conflict.
func (s *Service) update(ctx context.Context, fn func(kv.Txn) error) error {
	for attempt := 0; ; attempt++ {
		err := s.store.Update(ctx, fn)
		if !errors.Is(err, kv.ErrConflict) || attempt >= maxConflictRetries {
			return storeErr(err)
		}
		t := time.NewTimer(rand.N(time.Millisecond<<min(attempt, 6)) + 1)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

func (s *Service) view(ctx context.Context, fn func(kv.Reader) error) error {
	return storeErr(s.store.View(ctx, fn))
}

// storeErr maps the engine's errors to the registry's, which the API
// already answers.
func storeErr(err error) error {
	switch {
	case errors.Is(err, kv.ErrClosed):
		return registry.ErrClosed
	}
	return err
}

func getJSON(rd kv.Reader, k []byte, v any) error {
	b, err := rd.Get(k)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("corrupt record %q: %w", k, err)
	}
	return nil
}

func putJSON(w kv.Writer, k []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return w.Set(k, b)
}

// getTask reads a task of project (any project when project is "").
// Deleted and deleting tasks are not found.
func getTask(rd kv.Reader, project, id string) (*Task, error) {
	var t Task
	err := getJSON(rd, taskKey(id), &t)
	if errors.Is(err, kv.ErrNotFound) || err == nil && (t.Status == statusDeleting || project != "" && t.ProjectID != project) {
		return nil, &NotFoundError{What: "batch task", ID: id}
	}
	if err != nil {
		return nil, err
	}
	return &t, nil
}

func getItem(rd kv.Reader, task string, index int) (*Item, error) {
	var it Item
	if err := getJSON(rd, itemKey(task, index), &it); err != nil {
		return nil, err
	}
	it.Index = index
	return &it, nil
}

// counts is one slot's share of a task's item counts: what its writer
// moved out of Waitting, by the status it moved them to (a move from
// Processing to Success is -1 processing, +1 success).
type counts struct {
	Processing int `json:"p,omitempty"`
	Success    int `json:"s,omitempty"`
	Fail       int `json:"f,omitempty"`
	Stopped    int `json:"x,omitempty"`
}

func (c *counts) add(s ItemStatus, n int) {
	switch s {
	case ItemProcessing:
		c.Processing += n
	case ItemSuccess:
		c.Success += n
	case ItemFail:
		c.Fail += n
	case ItemStopped:
		c.Stopped += n
	}
}

// progress sums a task's counter slots.
func progress(rd kv.Reader, t *Task) (Progress, error) {
	var sum counts
	err := rd.Scan(prefix(famCount, t.ID), nil, false, func(k, v []byte) (bool, error) {
		var c counts
		if err := json.Unmarshal(v, &c); err != nil {
			return false, fmt.Errorf("corrupt counter %q: %w", k, err)
		}
		sum.Processing += c.Processing
		sum.Success += c.Success
		sum.Fail += c.Fail
		sum.Stopped += c.Stopped
		return true, nil
	})
	p := Progress{Total: t.Total, Processing: sum.Processing, Success: sum.Success, Fail: sum.Fail, Stopped: sum.Stopped}
	p.Waiting = p.Total - p.Processing - p.Success - p.Fail - p.Stopped
	return p, err
}

// setItem moves an item to outcome o, counting the move in slot, unless
// it is already there or has ended (its outcome was recorded by the
// transaction of its effect, or FinishItem got there first): recording
// twice is harmless. It reports whether it changed the item.
func (s *Service) setItem(w kv.Writer, task string, index int, slot string, o Outcome) (bool, error) {
	it, err := getItem(w, task, index)
	if err != nil {
		return false, fmt.Errorf("batch task %s item %d: %w", task, index, err)
	}
	if it.Status == o.Status || it.Status.ended() {
		return false, nil
	}
	var c counts
	if err := getJSON(w, countKey(task, slot), &c); err != nil && !errors.Is(err, kv.ErrNotFound) {
		return false, err
	}
	c.add(it.Status, -1)
	c.add(o.Status, 1)
	it.Status, it.Output, it.Error = o.Status, o.Output, nil
	if o.Status == ItemFail {
		e := s.describe(o.Err)
		it.Error = &e
	}
	if err := putJSON(w, itemKey(task, index), it); err != nil {
		return false, err
	}
	return true, putJSON(w, countKey(task, slot), c)
}

func jsonUnmarshal(k, v []byte, into any) error {
	if err := json.Unmarshal(v, into); err != nil {
		return fmt.Errorf("corrupt record %q: %w", k, err)
	}
	return nil
}
