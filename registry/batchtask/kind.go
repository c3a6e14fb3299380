package batchtask

import (
	"context"

	"github.com/iotgate/iotgate/registry/kv"
)

// Kind is what one task_type does to its items. Kinds are stateless
// beyond their dependencies; the service calls them from its workers,
// several at once.
type Kind interface {
	// Type is the task_type it serves ("createDevices").
	Type() string
	// Plan turns a new task into its items, from its targets or, when
	// it names a file, from the file's rows (sheet, nil otherwise). A
	// *registry.ValidationError refuses the task as bad input.
	Plan(ctx context.Context, t NewTask, sheet *Sheet) ([]NewItem, error)
	// Do carries out one item and returns its outcome. A kind whose
	// effect is a store write calls rec.Within inside that write's
	// transaction, so the outcome is durable exactly when the effect is;
	// otherwise the service records the outcome Do returns. An outcome
	// ItemProcessing leaves the item for Service.FinishItem. An error
	// (not an outcome) means the item could not be tried (the store is
	// unavailable, ctx ended): it stays waiting and is tried again.
	Do(ctx context.Context, t *Task, it *Item, rec Recorder) (Outcome, error)
}

// SheetKind is a Kind whose tasks may name an uploaded file.
type SheetKind interface {
	Kind
	// CheckHeader refuses a header its template does not have (a
	// *registry.ValidationError naming the column).
	CheckHeader(header []string) error
}

// Recorder records an item's outcome inside the caller's transaction.
type Recorder interface {
	Within(w kv.Writer, o Outcome) error
}
