package batchtask

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv"
)

// Limits bound what tasks may hold and how fast they run.
type Limits struct {
	// MaxItems bounds one task's items (targets or file rows). Zero:
	// 30,000 (IoTDA's bound on targets).
	MaxItems int
	// MaxFileBytes bounds an uploaded file. Zero: 2 MiB.
	MaxFileBytes int
	// MaxFiles bounds the files a project keeps. Zero: 100.
	MaxFiles int
	// Workers is how many items run at once (on the node running tasks).
	// Zero: 4.
	Workers int
	// Rate bounds the items started per second over all tasks. Zero:
	// 200.
	Rate float64
	// Chunk is how many items the runner takes from a task at a time
	// (tasks take turns by chunk). Zero: 64.
	Chunk int
}

// DefaultLimits are the zero Limits' values.
var DefaultLimits = Limits{MaxItems: 30_000, MaxFileBytes: 2 << 20, MaxFiles: 100, Workers: 4, Rate: 200, Chunk: 64}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxItems <= 0 {
		l.MaxItems = d.MaxItems
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = d.MaxFileBytes
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = d.MaxFiles
	}
	if l.Workers <= 0 {
		l.Workers = d.Workers
	}
	if l.Rate <= 0 {
		l.Rate = d.Rate
	}
	if l.Chunk <= 0 {
		l.Chunk = d.Chunk
	}
	return l
}

// Options configures a Service.
type Options struct {
	// Store is the registry's store.
	Store kv.Store
	// Kinds are the task types served.
	Kinds []Kind
	// Lease elects the node that runs tasks; nil: this node always does.
	Lease registry.Lease
	// Describe turns an item's failure into the code and message the
	// API would answer for it; nil: no code, the error's text.
	Describe func(error) ItemError
	Limits   Limits
	Logger   *slog.Logger
	// Poll is how often the runner looks for work it was not told of
	// (another node's tasks, after a lease change). Zero: 1 s.
	Poll time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Service keeps batch tasks and runs them (Run).
type Service struct {
	store    kv.Store
	kinds    map[string]Kind
	lease    registry.Lease
	describe func(error) ItemError
	limits   Limits
	log      *slog.Logger
	poll     time.Duration
	now      func() time.Time

	wake chan struct{} // a task was created or an item finished

	mu           sync.Mutex
	initializing map[string]bool // tasks whose items this process is writing
}

// New returns a service; call Run to run its tasks.
func New(o Options) *Service {
	s := &Service{store: o.Store, kinds: map[string]Kind{}, lease: o.Lease, describe: o.Describe,
		limits: o.Limits.withDefaults(), log: o.Logger, poll: o.Poll, now: o.Now,
		wake: make(chan struct{}, 1), initializing: map[string]bool{}}
	for _, k := range o.Kinds {
		s.kinds[k.Type()] = k
	}
	if s.lease == nil {
		s.lease = registry.LocalLease{}
	}
	if s.describe == nil {
		s.describe = func(err error) ItemError { return ItemError{Msg: err.Error()} }
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.poll <= 0 {
		s.poll = time.Second
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Limits returns the service's limits, defaults filled in.
func (s *Service) Limits() Limits { return s.limits }

// Types lists the task types served, sorted.
func (s *Service) Types() []string {
	var ts []string
	for t := range s.kinds {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

// newID returns a 24-hex-digit id that sorts by creation time.
func (s *Service) newID() string {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(s.now().UnixNano()))
	_, _ = rand.Read(b[8:])
	return hex.EncodeToString(b[:])
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// UploadFile keeps a batch task file for project after checking that it
// is a workbook (or CSV) within the limits whose header is one of the
// templates'.
func (s *Service) UploadFile(ctx context.Context, project, name string, content []byte) (*File, error) {
	if name == "" || len(name) > 255 || strings.ContainsAny(name, "/\\\x00") {
		return nil, &registry.ValidationError{Field: "file", Reason: "needs a file name of 1 to 255 characters without a path"}
	}
	if len(content) > s.limits.MaxFileBytes {
		return nil, &registry.ValidationError{Field: "file", Reason: fmt.Sprintf("is %d bytes, over the limit of %d", len(content), s.limits.MaxFileBytes)}
	}
	sheet, err := ReadSheet(name, content, s.limits.MaxItems)
	if err != nil {
		return nil, err
	}
	if err := s.checkAnyHeader(sheet.Header); err != nil {
		return nil, err
	}
	f := &File{ID: s.newID(), Name: name, Uploaded: s.now().UTC(), Size: len(content)}
	err = s.update(ctx, func(t kv.Txn) error {
		n := 0
		err := t.Scan(prefix(famFile, project), nil, false, func(k, v []byte) (bool, error) {
			n++
			return n < s.limits.MaxFiles, nil
		})
		if err != nil {
			return err
		}
		if n >= s.limits.MaxFiles {
			return fmt.Errorf("project %s already keeps %d batch task files, its quota: %w", project, n, registry.ErrQuota)
		}
		if err := putJSON(t, fileKey(project, f.ID), f); err != nil {
			return err
		}
		return t.Set(contentKey(f.ID), content)
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// checkAnyHeader accepts a header that some file-taking kind accepts.
func (s *Service) checkAnyHeader(header []string) error {
	var reasons []string
	for _, typ := range s.Types() {
		sk, ok := s.kinds[typ].(SheetKind)
		if !ok {
			continue
		}
		err := sk.CheckHeader(header)
		if err == nil {
			return nil
		}
		reasons = append(reasons, typ+": "+reason(err))
	}
	return &registry.ValidationError{Field: "file", Reason: "header matches no batch task template (" + strings.Join(reasons, "; ") + ")"}
}

func reason(err error) string {
	var ve *registry.ValidationError
	if errors.As(err, &ve) && ve.Field == "file" {
		return ve.Reason
	}
	return err.Error()
}

// Files lists project's uploaded files, oldest first.
func (s *Service) Files(ctx context.Context, project string) ([]File, error) {
	var fs []File
	err := s.view(ctx, func(rd kv.Reader) error {
		return rd.Scan(prefix(famFile, project), nil, false, func(k, v []byte) (bool, error) {
			var f File
			if err := jsonUnmarshal(k, v, &f); err != nil {
				return false, err
			}
			fs = append(fs, f)
			return true, nil
		})
	})
	return fs, err
}

// DeleteFile deletes one of project's files. Tasks made from it keep
// their items.
func (s *Service) DeleteFile(ctx context.Context, project, id string) error {
	return s.update(ctx, func(t kv.Txn) error {
		if _, err := t.Get(fileKey(project, id)); errors.Is(err, kv.ErrNotFound) {
			return &NotFoundError{What: "batch task file", ID: id}
		} else if err != nil {
			return err
		}
		if err := t.Delete(fileKey(project, id)); err != nil {
			return err
		}
		return t.Delete(contentKey(id))
	})
}

// loadSheet reads one of project's files.
func (s *Service) loadSheet(ctx context.Context, project, id string) (*Sheet, error) {
	var f File
	var content []byte
	err := s.view(ctx, func(rd kv.Reader) error {
		if err := getJSON(rd, fileKey(project, id), &f); errors.Is(err, kv.ErrNotFound) {
			return &registry.ValidationError{Field: "document_source", Reason: fmt.Sprintf("batch task file %s does not exist", id)}
		} else if err != nil {
			return err
		}
		var err error
		content, err = rd.Get(contentKey(id))
		return err
	})
	if err != nil {
		return nil, err
	}
	return ReadSheet(f.Name, content, s.limits.MaxItems)
}

// itemsPerWrite bounds the items one transaction of Create or of the
// purge of a deleted task writes.
const itemsPerWrite = 256

// Create makes a task and its items and leaves it to the runner. The
// items are written in several transactions while the task is
// Initializing; a task whose creator died meanwhile is failed by the
// runner.
func (s *Service) Create(ctx context.Context, nt NewTask) (*Task, error) {
	kind, ok := s.kinds[nt.Type]
	if !ok {
		return nil, &registry.ValidationError{Field: "task_type", Reason: "must be one of " + strings.Join(s.Types(), ", ")}
	}
	if err := checkName(nt.Name); err != nil {
		return nil, err
	}
	var sheet *Sheet
	switch {
	case len(nt.Targets) > s.limits.MaxItems:
		return nil, &registry.ValidationError{Field: "targets", Reason: fmt.Sprintf("must be at most %d", s.limits.MaxItems)}
	case len(nt.Targets) > 0:
	case nt.DocumentSource != "":
		sk, ok := kind.(SheetKind)
		if !ok {
			return nil, &registry.ValidationError{Field: "document_source", Reason: nt.Type + " tasks do not take a file"}
		}
		var err error
		if sheet, err = s.loadSheet(ctx, nt.ProjectID, nt.DocumentSource); err != nil {
			return nil, err
		}
		if err := sk.CheckHeader(sheet.Header); err != nil {
			return nil, err
		}
	}
	items, err := kind.Plan(ctx, nt, sheet)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, &registry.ValidationError{Field: "targets", Reason: "the task has no items: give targets or document_source"}
	}
	if len(items) > s.limits.MaxItems {
		return nil, &registry.ValidationError{Field: "targets", Reason: fmt.Sprintf("the task has %d items, over the limit of %d", len(items), s.limits.MaxItems)}
	}
	t := &Task{ID: s.newID(), ProjectID: nt.ProjectID, AppID: nt.AppID, Name: nt.Name, Type: nt.Type,
		Status: StatusInitializing, Document: nt.Document, ExtInfo: nt.ExtInfo, FileID: nt.DocumentSource,
		Created: s.now().UTC(), Total: len(items)}
	s.mu.Lock()
	s.initializing[t.ID] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.initializing, t.ID)
		s.mu.Unlock()
	}()
	err = s.update(ctx, func(w kv.Txn) error {
		if err := putJSON(w, taskKey(t.ID), t); err != nil {
			return err
		}
		if err := w.Set(listKey(t.ProjectID, t.ID), nil); err != nil {
			return err
		}
		return w.Set(activeKey(t.ID), nil)
	})
	if err != nil {
		return nil, err
	}
	for from := 0; from < len(items); from += itemsPerWrite {
		batch := items[from:min(from+itemsPerWrite, len(items))]
		err = s.update(ctx, func(w kv.Txn) error {
			for i, ni := range batch {
				idx := from + i
				if err := putJSON(w, itemKey(t.ID, idx), Item{Target: ni.Target, Input: ni.Input, Status: ItemWaiting}); err != nil {
					return err
				}
				if ni.Target == "" {
					continue
				}
				if _, err := w.Get(targetKey(t.ID, ni.Target)); errors.Is(err, kv.ErrNotFound) {
					if err := w.Set(targetKey(t.ID, ni.Target), binary.BigEndian.AppendUint32(nil, uint32(idx))); err != nil {
						return err
					}
				} else if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			// The runner fails the task once it is no longer ours.
			return nil, fmt.Errorf("batch task %s: write its items: %w", t.ID, err)
		}
	}
	err = s.update(ctx, func(w kv.Txn) error {
		cur, err := getTask(w, "", t.ID)
		if err != nil {
			return err
		}
		if cur.Status != StatusInitializing {
			// The runner took its creation for abandoned (initTimeout).
			return fmt.Errorf("writing its items took too long; the task ended %s", cur.Status)
		}
		cur.Status = StatusWaiting
		*t = *cur
		return putJSON(w, taskKey(t.ID), cur)
	})
	if err != nil {
		return nil, fmt.Errorf("batch task %s: %w", t.ID, err)
	}
	t.Progress = Progress{Total: t.Total, Waiting: t.Total}
	s.poke()
	return t, nil
}

// checkName applies IoTDA's rule for task_name.
func checkName(n string) error {
	if n == "" || len(n) > 128 {
		return &registry.ValidationError{Field: "task_name", Reason: "must be 1 to 128 characters"}
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return &registry.ValidationError{Field: "task_name", Reason: "may only contain letters, digits and underscores"}
		}
	}
	return nil
}

// Task returns one of project's tasks with its progress.
func (s *Service) Task(ctx context.Context, project, id string) (*Task, error) {
	var t *Task
	err := s.view(ctx, func(rd kv.Reader) error {
		var err error
		if t, err = getTask(rd, project, id); err != nil {
			return err
		}
		t.Progress, err = progress(rd, t)
		return err
	})
	return t, err
}

// List returns a page of project's tasks matching f, newest first, with
// the number that match and the marker of the next page ("" after the
// last).
func (s *Service) List(ctx context.Context, project string, f Filter, pg Page) (tasks []Task, count int, marker string, err error) {
	err = s.view(ctx, func(rd kv.Reader) error {
		skip := pg.Offset
		return rd.Scan(prefix(famList, project), nil, true, func(k, _ []byte) (bool, error) {
			id := string(k[len(prefix(famList, project)):])
			t, err := getTask(rd, project, id)
			var nf *NotFoundError
			if errors.As(err, &nf) {
				return true, nil // being deleted
			}
			if err != nil {
				return false, err
			}
			if f.Type != "" && t.Type != f.Type || f.Status != "" && t.Status != f.Status {
				return true, nil
			}
			count++
			if pg.Marker != "" && id >= pg.Marker {
				return true, nil
			}
			if skip > 0 {
				skip--
				return true, nil
			}
			if len(tasks) < pg.Limit {
				if t.Progress, err = progress(rd, t); err != nil {
					return false, err
				}
				tasks = append(tasks, *t)
				if len(tasks) == pg.Limit {
					marker = id
				}
			}
			return true, nil
		})
	})
	if len(tasks) < pg.Limit {
		marker = ""
	}
	return tasks, count, marker, err
}

// Items returns a task with a page of its items matching f, in order,
// and the number that match. The marker is the index of the last item
// returned.
func (s *Service) Items(ctx context.Context, project, id string, f ItemFilter, pg Page) (*Task, []Item, int, string, error) {
	var (
		t      *Task
		items  []Item
		count  int
		marker string
	)
	err := s.view(ctx, func(rd kv.Reader) error {
		var err error
		if t, err = getTask(rd, project, id); err != nil {
			return err
		}
		if t.Progress, err = progress(rd, t); err != nil {
			return err
		}
		if f.Target != "" {
			v, err := rd.Get(targetKey(id, f.Target))
			if errors.Is(err, kv.ErrNotFound) {
				return nil
			}
			if err != nil || len(v) != 4 {
				return fmt.Errorf("batch task %s: target index of %q: %v", id, f.Target, err)
			}
			it, err := getItem(rd, id, int(binary.BigEndian.Uint32(v)))
			if err != nil {
				return err
			}
			if f.Status == "" || it.Status == f.Status {
				count = 1
				if pg.Offset == 0 && pg.Marker == "" {
					items = append(items, *it)
				}
			}
			return nil
		}
		var from []byte
		if pg.Marker != "" {
			n, err := parseMarker(pg.Marker)
			if err != nil {
				return err
			}
			from = itemKey(id, n+1)
		}
		count = countOf(t.Progress, f.Status)
		skip := pg.Offset
		return rd.Scan(prefix(famItem, id), from, false, func(k, v []byte) (bool, error) {
			var it Item
			if err := jsonUnmarshal(k, v, &it); err != nil {
				return false, err
			}
			if f.Status != "" && it.Status != f.Status {
				return true, nil
			}
			if skip > 0 {
				skip--
				return true, nil
			}
			if it.Index, err = itemIndex(id, k); err != nil {
				return false, err
			}
			items = append(items, it)
			return len(items) < pg.Limit, nil
		})
	})
	if len(items) == pg.Limit && len(items) > 0 {
		marker = itemMarker(items[len(items)-1].Index)
	}
	return t, items, count, marker, err
}

// itemMarker is the marker after the item at index: 24 hex digits, the
// form of IoTDA's markers.
func itemMarker(index int) string { return fmt.Sprintf("%024x", index) }

func parseMarker(m string) (int, error) {
	n, err := strconv.ParseUint(m, 16, 32)
	if err != nil || len(m) != 24 {
		return 0, &registry.ValidationError{Field: "marker", Reason: "is not a marker this listing returned"}
	}
	return int(n), nil
}

func countOf(p Progress, s ItemStatus) int {
	switch s {
	case ItemWaiting:
		return p.Waiting
	case ItemProcessing:
		return p.Processing
	case ItemSuccess:
		return p.Success
	case ItemFail:
		return p.Fail
	case ItemStopped:
		return p.Stopped
	}
	return p.Total
}

// Stop stops a task: its waiting items are not started (they end
// Stopped); items already processing finish.
func (s *Service) Stop(ctx context.Context, project, id string) error {
	err := s.update(ctx, func(w kv.Txn) error {
		t, err := getTask(w, project, id)
		if err != nil {
			return err
		}
		switch {
		case t.Status.Ended():
			return ErrEnded
		case t.Status == StatusStopping:
			return nil
		}
		t.Status = StatusStopping
		return putJSON(w, taskKey(id), t)
	})
	s.poke()
	return err
}

// Delete deletes an ended task. It is gone at once for the API; the
// runner deletes its items.
func (s *Service) Delete(ctx context.Context, project, id string) error {
	err := s.update(ctx, func(w kv.Txn) error {
		t, err := getTask(w, project, id)
		if err != nil {
			return err
		}
		if !t.Status.Ended() {
			return ErrActive
		}
		t.Status = statusDeleting
		if err := putJSON(w, taskKey(id), t); err != nil {
			return err
		}
		if err := w.Delete(listKey(project, id)); err != nil {
			return err
		}
		return w.Set(activeKey(id), nil)
	})
	s.poke()
	return err
}

// finishSlot is the counter slot FinishItem writes.
const finishSlot = "finish"

// FinishItem records the outcome of an item its kind left Processing
// (its target's first item, for a target named twice). A repeat of the
// outcome already recorded is accepted and changes nothing.
func (s *Service) FinishItem(ctx context.Context, taskID, target string, o Outcome) error {
	if o.Status != ItemSuccess && o.Status != ItemFail {
		return fmt.Errorf("batch task %s: an item finishes Success or Fail, not %s", taskID, o.Status)
	}
	err := s.update(ctx, func(w kv.Txn) error {
		v, err := w.Get(targetKey(taskID, target))
		if errors.Is(err, kv.ErrNotFound) {
			return &NotFoundError{What: "batch task item", ID: taskID + "/" + target}
		}
		if err != nil {
			return err
		}
		idx := int(binary.BigEndian.Uint32(v))
		it, err := getItem(w, taskID, idx)
		if err != nil {
			return err
		}
		switch {
		case it.Status == o.Status:
			return nil
		case it.Status != ItemProcessing:
			return fmt.Errorf("batch task %s item %s is %s: %w", taskID, target, it.Status, ErrNotProcessing)
		}
		_, err = s.setItem(w, taskID, idx, finishSlot, o)
		return err
	})
	s.poke()
	return err
}
