package registry

import (
	"context"
	"testing"
	"time"
)

func TestEventBacklogCut(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	r := newEventRegistry(t, memStore(t), clock, EventOptions{})
	ctx := context.Background()
	mustProduct(t, r, "proj", "m", "MQTT")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m"})
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 1000)
	for i := range payload {
		payload[i] = 'a'
	}
	for range 10 {
		if err := r.AddMessage(ctx, d.DeviceID, Message{Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	evs := allEvents(t, r, "proj") // the create and 10 messages
	var sizes []int64              // stored bytes of each event
	prefix := prefixKey(famEvent, "proj")
	if err := r.view(ctx, func(rd Reader) error {
		return rd.Scan(prefix, nil, false, func(k, v []byte) (bool, error) {
			sizes = append(sizes, int64(len(k)+len(v)))
			return true, nil
		})
	}); err != nil || len(sizes) != len(evs) {
		t.Fatalf("%d stored events of %d (%v)", len(sizes), len(evs), err)
	}
	newest3 := sizes[8] + sizes[9] + sizes[10]
	cases := []struct {
		name     string
		cursor   uint64
		maxBytes int64
		want     uint64
	}{
		{"everything fits", 0, 1 << 20, 0},
		{"nothing fits", 0, 10, evs[10].Position},
		{"the newest three fit", 0, newest3, evs[7].Position},
		{"the newest two fit", 0, newest3 - 1, evs[8].Position},
		{"the backlog after the cursor fits", evs[7].Position, newest3, 0},
		{"the backlog after the cursor does not", evs[6].Position, newest3, evs[7].Position},
	}
	for _, c := range cases {
		got, err := r.EventBacklogCut(ctx, "proj", c.cursor, c.maxBytes)
		if err != nil || got != c.want {
			t.Errorf("%s: cut at %d (%v), want %d", c.name, got, err, c.want)
		}
	}
}

func TestAckEventsDropping(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	r := newEventRegistry(t, memStore(t), clock, EventOptions{})
	ctx := context.Background()
	mustProduct(t, r, "proj", "m", "MQTT")
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m"}); err != nil {
		t.Fatal(err)
	}
	evs := allEvents(t, r, "proj")
	if _, err := r.AddEventConsumer(ctx, "proj", "a"); err != nil {
		t.Fatal(err)
	}
	if err := r.AckEventsDropping(ctx, "proj", "a", evs[0].Position, EventDrops{Count: 3, Reason: "age"}); err != nil {
		t.Fatal(err)
	}
	c, err := r.EventConsumer(ctx, "proj", "a")
	if err != nil || c.Cursor != evs[0].Position || c.Dropped != 3 || c.LastDropReason != "age" || !c.LastDrop.Equal(clock.Now().UTC()) {
		t.Fatalf("consumer after a drop: %+v (%v)", c, err)
	}
	// An acknowledgement behind the cursor counts nothing more.
	if err := r.AckEventsDropping(ctx, "proj", "a", evs[0].Position, EventDrops{Count: 5, Reason: "size"}); err != nil {
		t.Fatal(err)
	}
	if c, _ := r.EventConsumer(ctx, "proj", "a"); c.Dropped != 3 {
		t.Errorf("a repeated acknowledgement counted drops again: %+v", c)
	}
}
