package batchtask

import (
	"errors"
	"fmt"
)

// NotFoundError is returned for a task or file that does not exist in
// the caller's project.
type NotFoundError struct {
	What string // "batch task", "batch task file" or "batch task item"
	ID   string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %s does not exist", e.What, e.ID) }

// ErrActive refuses to delete a task that is still running.
var ErrActive = errors.New("the batch task is still running: stop it first")

// ErrEnded refuses to stop a task that has already ended.
var ErrEnded = errors.New("the batch task has already ended")

// ErrNotProcessing refuses FinishItem for an item that is not Processing
// (not yet started, or already finished with another outcome).
var ErrNotProcessing = errors.New("the batch task item is not processing")
