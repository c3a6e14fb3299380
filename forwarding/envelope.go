package forwarding

import (
	"encoding/json"
	"fmt"

	"github.com/iotgate/iotgate/registry"
)

// envelope is IoTDA's push message.
type envelope struct {
	Resource    string     `json:"resource"`
	Event       string     `json:"event"`
	EventTime   string     `json:"event_time"`
	EventTimeMs string     `json:"event_time_ms"`
	RequestID   string     `json:"request_id"`
	NotifyData  notifyData `json:"notify_data"`
}

type notifyData struct {
	Header registry.EventHeader `json:"header"`
	Body   json.RawMessage      `json:"body"`
}

// IoTDA's push time formats.
const (
	eventTime   = "20060102T150405Z"
	eventTimeMs = "2006-01-02T15:04:05.000Z"
)

// encodeEnvelope encodes ev as IoTDA pushes it.
func encodeEnvelope(ev *registry.Event) ([]byte, error) {
	t := ev.Time.UTC()
	b, err := json.Marshal(envelope{Resource: ev.Resource, Event: ev.Event, EventTime: t.Format(eventTime),
		EventTimeMs: t.Format(eventTimeMs), RequestID: ev.ID, NotifyData: notifyData{Header: ev.Header, Body: ev.Body}})
	if err != nil {
		return nil, fmt.Errorf("encode push of event %s: %w", ev.ID, err)
	}
	return b, nil
}
