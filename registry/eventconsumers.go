package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// EventConsumer is a named reader of a project's events whose cursor the
// registry keeps. Events every consumer of a project has acknowledged are
// trimmed; a project without consumers keeps its events until the
// backlog bounds (EventOptions) trim them.
type EventConsumer struct {
	ProjectID string    `json:"-"`
	Name      string    `json:"-"`
	Cursor    uint64    `json:"cursor"` // the last position acknowledged
	Created   time.Time `json:"created"`
	// Dropped counts the events the consumer passed over undelivered
	// because its backlog bounds were exceeded (a forwarding action's);
	// LastDrop is when the last were, LastDropReason why.
	Dropped        uint64    `json:"dropped,omitempty"`
	LastDrop       time.Time `json:"last_drop,omitzero"`
	LastDropReason string    `json:"last_drop_reason,omitempty"`
}

// EventDrops are events a consumer passes over undelivered, counted on
// it by AckEventsDropping.
type EventDrops struct {
	Count  uint64
	Reason string
}

// AddEventConsumer registers a consumer, which starts before the oldest
// event kept; it returns the existing one if name is taken.
func (r *Registry) AddEventConsumer(ctx context.Context, project, name string) (*EventConsumer, error) {
	if err := checkID("name", name, 64, true); err != nil {
		return nil, err
	}
	c := &EventConsumer{ProjectID: project, Name: name, Created: r.now().UTC()}
	err := r.write(ctx, func(w Writer) error {
		cur, err := getEventConsumer(w, project, name)
		if err == nil {
			c = cur
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		c.Cursor = 0
		return putEventConsumer(w, c)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// EventConsumer returns a consumer and its acknowledged cursor.
func (r *Registry) EventConsumer(ctx context.Context, project, name string) (*EventConsumer, error) {
	var c *EventConsumer
	err := r.view(ctx, func(rd Reader) error {
		var err error
		c, err = getEventConsumer(rd, project, name)
		return err
	})
	return c, err
}

// AckEvents records that a consumer has processed every event up to and
// including cursor. Acknowledgements only move forward: an older cursor
// than the stored one changes nothing.
func (r *Registry) AckEvents(ctx context.Context, project, name string, cursor uint64) error {
	return r.AckEventsDropping(ctx, project, name, cursor, EventDrops{})
}

// AckEventsDropping is AckEvents for a consumer that passed over some of
// the events up to cursor undelivered: they are counted on it, in the
// same write as the acknowledgement.
func (r *Registry) AckEventsDropping(ctx context.Context, project, name string, cursor uint64, drops EventDrops) error {
	if last, err := r.lastPosition(ctx); err != nil {
		return err
	} else if cursor > last {
		return fmt.Errorf("%w: %d", ErrCursorAhead, cursor)
	}
	return r.write(ctx, func(w Writer) error {
		c, err := getEventConsumer(w, project, name)
		if err != nil {
			return err
		}
		if cursor <= c.Cursor {
			return nil
		}
		c.Cursor = cursor
		if drops.Count > 0 {
			c.Dropped += drops.Count
			c.LastDrop, c.LastDropReason = r.now().UTC(), drops.Reason
		}
		return putEventConsumer(w, c)
	})
}

// DeleteEventConsumer removes a consumer; what only it held back is
// trimmed at the next sweep.
func (r *Registry) DeleteEventConsumer(ctx context.Context, project, name string) error {
	if strings.HasPrefix(name, actionConsumerPrefix) {
		// Deleting it would leave the action's worker without a cursor.
		return invalid("name", "%q is the cursor of rule action %s: delete the action instead", name,
			strings.TrimPrefix(name, actionConsumerPrefix))
	}
	return r.write(ctx, func(w Writer) error {
		if _, err := getEventConsumer(w, project, name); err != nil {
			return err
		}
		return w.Delete(eventConsumerKey(project, name))
	})
}

func getEventConsumer(rd Reader, project, name string) (*EventConsumer, error) {
	v, err := rd.Get(eventConsumerKey(project, name))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, &NotFoundError{Kind: EntityEventConsumer, ID: name}
	}
	if err != nil {
		return nil, fmt.Errorf("read event consumer %s: %w", name, err)
	}
	c := &EventConsumer{ProjectID: project, Name: name}
	if err := json.Unmarshal(v, c); err != nil {
		return nil, fmt.Errorf("decode event consumer %s: %w", name, err)
	}
	return c, nil
}

func putEventConsumer(w Writer, c *EventConsumer) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode event consumer %s: %w", c.Name, err)
	}
	return w.Set(eventConsumerKey(c.ProjectID, c.Name), b)
}
