// Package batchtask runs IoTDA's batch tasks: one operation (create,
// delete, freeze devices, or a kind registered by another package, such
// as a firmware upgrade) applied to many items, in the background, at a
// bounded rate, surviving restarts.
//
// A task is a record plus one item record per target (a device id, or a
// row of an uploaded file), all in the registry's store (keys.go). The
// runner (runner.go) takes a task's waiting items in bounded chunks and
// hands them to a fixed pool of workers; each item's outcome is written
// before the runner moves past it, in the same transaction as the item's
// effect where the kind can (Recorder), so a crash never loses a done
// item nor does one twice. After a restart the runner resumes every task
// that was waiting or processing. On a cluster only the holder of the
// "batchtasks" lease runs tasks.
//
// What an item does is its task type's Kind (kind.go); a kind whose items
// finish later (a device reporting an upgrade's result) leaves them
// Processing and completes them with Service.FinishItem.
package batchtask

import (
	"encoding/json"
	"time"
)

// Status is a task's status, as IoTDA spells it (Waitting is theirs).
type Status string

// Task statuses.
const (
	StatusInitializing   Status = "Initializing"
	StatusWaiting        Status = "Waitting"
	StatusProcessing     Status = "Processing"
	StatusSuccess        Status = "Success"
	StatusFail           Status = "Fail"
	StatusPartialSuccess Status = "PartialSuccess"
	StatusStopping       Status = "Stopping"
	StatusStopped        Status = "Stopped"
	// statusDeleting is never shown: the task is gone for the API while
	// the runner deletes its items.
	statusDeleting Status = "deleting"
)

// Ended reports whether a task in status s has no more work.
func (s Status) Ended() bool {
	switch s {
	case StatusSuccess, StatusFail, StatusPartialSuccess, StatusStopped:
		return true
	}
	return false
}

// ItemStatus is one item's status (IoTDA's task_detail status).
type ItemStatus string

// Item statuses.
const (
	ItemWaiting    ItemStatus = "Waitting"
	ItemProcessing ItemStatus = "Processing"
	ItemSuccess    ItemStatus = "Success"
	ItemFail       ItemStatus = "Fail"
	ItemStopped    ItemStatus = "Stopped"
)

// ended reports whether an item in status s is done for good.
func (s ItemStatus) ended() bool { return s == ItemSuccess || s == ItemFail || s == ItemStopped }

// Task is a batch task.
type Task struct {
	ID        string          `json:"id"`
	ProjectID string          `json:"project"`
	AppID     string          `json:"app_id,omitempty"`
	Name      string          `json:"name"`
	Type      string          `json:"type"`
	Status    Status          `json:"status"`
	StatusMsg string          `json:"status_desc,omitempty"`
	Document  json.RawMessage `json:"document,omitempty"`
	ExtInfo   json.RawMessage `json:"ext_info,omitempty"`
	FileID    string          `json:"file_id,omitempty"`
	Created   time.Time       `json:"created"`
	// Total is the number of items; Cursor the index of the first item
	// the runner has not yet taken (every item before it has an outcome
	// or is Processing).
	Total  int `json:"total"`
	Cursor int `json:"cursor"`
	// Rewinds counts the retries that moved Cursor back: a chunk that
	// ran meanwhile leaves Cursor where the retry put it.
	Rewinds int `json:"rewinds,omitempty"`

	// Progress is computed from the counters when the task is read.
	Progress Progress `json:"-"`
}

// Progress counts a task's items by status.
type Progress struct {
	Total, Waiting, Processing, Success, Fail, Stopped int
}

// Item is one target of a task and its outcome.
type Item struct {
	Index  int             `json:"-"`
	Target string          `json:"t"`
	Input  json.RawMessage `json:"in,omitempty"`
	Status ItemStatus      `json:"s"`
	Output string          `json:"o,omitempty"`
	Error  *ItemError      `json:"e,omitempty"`
}

// ItemError is why an item failed, as the API would have answered the
// same request on its own.
type ItemError struct {
	Code string `json:"error_code"`
	Msg  string `json:"error_msg"`
}

// Outcome is what became of an item.
type Outcome struct {
	Status ItemStatus // ItemSuccess, ItemFail or ItemProcessing
	Output string
	// Err is why it failed (Status ItemFail); the service describes it
	// with its Describe function.
	Err error
}

// NewTask is a task to create.
type NewTask struct {
	ProjectID, AppID, Name, Type string
	// Targets are the items (device ids), or else the rows of the
	// uploaded file DocumentSource.
	Targets        []string
	DocumentSource string
	Document       json.RawMessage
	ExtInfo        json.RawMessage
}

// NewItem is one item a kind plans.
type NewItem struct {
	Target string
	Input  json.RawMessage
}

// File is an uploaded batch task file.
type File struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Uploaded time.Time `json:"uploaded"`
	Size     int       `json:"size"`
}

// Filter narrows a task listing; empty fields match all.
type Filter struct {
	Type   string
	Status Status
}

// ItemFilter narrows a task's items; empty fields match all.
type ItemFilter struct {
	Status ItemStatus
	Target string
}

// Page selects a page of a listing: at most Limit entries after Marker
// (an opaque value a previous page returned), skipping Offset.
type Page struct {
	Limit  int
	Marker string
	Offset int
}
