package registry

import (
	"encoding/base64"
	"encoding/json"
	"time"
	"unicode/utf8"
)

// The event of each kind of change, with the body IoTDA pushes for it.
// The write that makes the change records its event (see appendEvent).

// deviceEventBody is IoTDA's QueryDeviceBase, the body of device
// create/update/delete pushes. Secrets are never in it.
type deviceEventBody struct {
	AppID         string          `json:"app_id"`
	DeviceID      string          `json:"device_id"`
	NodeID        string          `json:"node_id"`
	GatewayID     string          `json:"gateway_id"`
	DeviceName    string          `json:"device_name,omitempty"`
	Description   string          `json:"description,omitempty"`
	ProductID     string          `json:"product_id"`
	Status        Status          `json:"status"`
	CreateTime    string          `json:"create_time"`
	ActiveTime    string          `json:"active_time,omitempty"`
	AuthInfo      deviceEventAuth `json:"auth_info"`
	ExtensionInfo json.RawMessage `json:"extension_info,omitempty"`
	Tags          []EventTag      `json:"tags"`
}

type deviceEventAuth struct {
	AuthType     AuthType `json:"auth_type"`
	SecureAccess bool     `json:"secure_access"`
	Timeout      *int64   `json:"timeout,omitempty"`
}

// encodeDeviceChange encodes the event of a device record's change from
// old to d (nil old: created; nil d: deleted). Its status is the one a
// read would report, read through rd when the caller is in a
// transaction (nil otherwise): a second store read beside it would need
// a second connection of the engine's pool, and a full pool would wait
// on itself.
func (r *Registry) encodeDeviceChange(rd Reader, old, d *Device) (encodedEvent, error) {
	event, cur := EventUpdate, d
	switch {
	case old == nil:
		event = EventCreate
	case d == nil:
		event, cur = EventDelete, old
	}
	v := *cur
	r.fillStatusIn(rd, &v)
	body := deviceEventBody{AppID: v.ProjectID, DeviceID: v.DeviceID, NodeID: v.NodeID, GatewayID: v.EffectiveGatewayID(),
		DeviceName: v.DeviceName, Description: v.Description, ProductID: v.ProductID,
		Status: v.Status, CreateTime: compactOrEmpty(v.CreateTime), ActiveTime: compactOrEmpty(v.ActiveTime),
		AuthInfo:      deviceEventAuth{AuthType: v.Auth.Type, SecureAccess: v.Auth.SecureAccess},
		ExtensionInfo: v.ExtensionInfo, Tags: eventTags(&v)}
	if v.Auth.TimeoutSet {
		t := v.Auth.Timeout
		body.AuthInfo.Timeout = &t
	}
	return encodeDeviceEvent(&v, ResourceDevice, event, r.now(), &body)
}

// deviceEvent records the change of a device record from old to d. ev is
// the change's event if the caller encoded it before the write (with
// encodeDeviceChange of the same old and d), else nil.
func (r *Registry) deviceEvent(w Writer, old, d *Device, ev *encodedEvent) error {
	if ev == nil {
		e, err := r.encodeDeviceChange(w, old, d)
		if err != nil {
			return err
		}
		ev = &e
	}
	var err error
	if old == nil {
		if err := r.relayLeftovers(w, d.DeviceID); err != nil {
			return err
		}
		err = r.appendAfter(w, *ev, 0)
	} else {
		err = r.appendEncoded(w, *ev)
	}
	if err != nil {
		return err
	}
	if d == nil {
		// The seq belongs to this device; one created again under its id
		// starts over (its create event has seq 1).
		return r.events.deleteSeq(w, old.DeviceID)
	}
	return nil
}

// messageEventBody is the body of device.message report: the message's
// id and topic, and its content as JSON when it is JSON, else as text,
// else base64 (encoding says which).
type messageEventBody struct {
	ID       string          `json:"id"`
	Topic    string          `json:"topic,omitempty"`
	Content  json.RawMessage `json:"content"`
	Encoding string          `json:"encoding"`
}

func messageEvent(d *Device, m *Message, at time.Time) (encodedEvent, error) {
	b := messageEventBody{ID: m.MessageID, Topic: m.Topic, Encoding: "none"}
	switch {
	case json.Valid(m.Payload):
		b.Content = m.Payload
	case utf8.Valid(m.Payload):
		b.Content, _ = json.Marshal(string(m.Payload))
	default:
		b.Content, _ = json.Marshal(base64.StdEncoding.EncodeToString(m.Payload))
		b.Encoding = "base64"
	}
	return encodeDeviceEvent(d, ResourceDeviceMessage, EventReport, at, b)
}

// propertyEventBody is the body of device.property report.
type propertyEventBody struct {
	Services []propertyEventService `json:"services"`
}

type propertyEventService struct {
	ServiceID  string                     `json:"service_id"`
	Properties map[string]json.RawMessage `json:"properties"`
	EventTime  string                     `json:"event_time"`
}

// propertyEvent encodes a property report whose event times are filled in.
func propertyEvent(d *Device, reports []ServiceProperties, at time.Time) (encodedEvent, error) {
	b := propertyEventBody{Services: make([]propertyEventService, 0, len(reports))}
	for _, rep := range reports {
		b.Services = append(b.Services, propertyEventService{ServiceID: rep.ServiceID, Properties: rep.Properties,
			EventTime: compactOrEmpty(rep.EventTime)})
	}
	return encodeDeviceEvent(d, ResourceDeviceProperty, EventReport, at, b)
}

// commandStatusEventBody is the body of device.command.status update.
type commandStatusEventBody struct {
	CommandID     string          `json:"command_id"`
	ServiceID     string          `json:"service_id,omitempty"`
	CommandName   string          `json:"command_name,omitempty"`
	Status        AsyncStatus     `json:"status"`
	Result        json.RawMessage `json:"result,omitempty"`
	CreatedTime   string          `json:"created_time"`
	SentTime      string          `json:"sent_time,omitempty"`
	DeliveredTime string          `json:"delivered_time,omitempty"`
	ResponseTime  string          `json:"response_time,omitempty"`
}

// commandEvent records an asynchronous command's status change from old
// (nil: just created, PENDING) to c; nothing when the status is unchanged.
func (r *Registry) commandEvent(w Writer, old, c *AsyncCommand) error {
	if old != nil && old.Status == c.Status {
		return nil
	}
	d, ok, err := r.eventDevice(w, c.DeviceID)
	if err != nil || !ok {
		return err
	}
	ev, err := encodeDeviceEvent(d, ResourceDeviceCommandStatus, EventUpdate, r.now(), commandStatusEventBody{
		CommandID: c.CommandID, ServiceID: c.ServiceID, CommandName: c.CommandName, Status: c.Status, Result: c.Result,
		CreatedTime: compactOrEmpty(c.CreatedTime), SentTime: compactOrEmpty(c.SentTime),
		DeliveredTime: compactOrEmpty(c.DeliveredTime), ResponseTime: compactOrEmpty(c.ResponseTime)})
	if err != nil {
		return err
	}
	return r.appendEncoded(w, ev)
}

// DownlinkStatus is a downlink message's status change, for the
// device.message.status event (IoTDA's statuses: PENDING, DELIVERED,
// FAILED, TIMEOUT...).
type DownlinkStatus struct {
	MessageID string
	Name      string
	Topic     string
	Status    string
	At        time.Time
	// ErrorCode and ErrorMsg explain a failure (e.g. IOTDA.014112).
	ErrorCode, ErrorMsg string
}

// downlinkStatusEventBody is the body of device.message.status update.
type downlinkStatusEventBody struct {
	MessageID string               `json:"message_id"`
	Name      string               `json:"name,omitempty"`
	Topic     string               `json:"topic,omitempty"`
	Status    string               `json:"status"`
	Timestamp string               `json:"timestamp"`
	ErrorInfo *downlinkStatusError `json:"error_info,omitempty"`
}

type downlinkStatusError struct {
	ErrorCode string `json:"error_code"`
	ErrorMsg  string `json:"error_msg"`
}

// downlinkStatusEvent records a downlink message's status change of
// device d in w's transaction; the write that changes the message's
// stored status calls it.
func (r *Registry) downlinkStatusEvent(w Writer, d *Device, s DownlinkStatus) error {
	b := downlinkStatusEventBody{MessageID: s.MessageID, Name: s.Name, Topic: s.Topic, Status: s.Status,
		Timestamp: compactOrEmpty(s.At)}
	if s.ErrorCode != "" || s.ErrorMsg != "" {
		b.ErrorInfo = &downlinkStatusError{ErrorCode: s.ErrorCode, ErrorMsg: s.ErrorMsg}
	}
	ev, err := newDeviceEvent(d, ResourceDeviceMessageStatus, EventUpdate, s.At, b)
	if err != nil {
		return err
	}
	return r.appendEvent(w, ev)
}
