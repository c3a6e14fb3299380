package registry

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// The interfaces below are how an application's request reaches a device.
// They are declared here, in the domain, and implemented by the protocol
// adapters (mqtt/, lwm2m/); cmd/iotgate registers the implementations with
// the Router (router.go), the one thing the REST API calls to reach a
// device, so no adapter imports another.

// Errors a Sender returns; the REST API maps them to IoTDA codes.
var (
	// ErrNotConnected: the device has no live session (IOTDA.014016).
	ErrNotConnected = errors.New("device is not online")
	// ErrTimeout: the device did not answer in time (IOTDA.014111).
	ErrTimeout = errors.New("device did not respond in time")
	// ErrUnsupported: the device's protocol cannot carry the request.
	ErrUnsupported = errors.New("not supported for this device's protocol")
	// ErrNotSubscribed: the device has not subscribed to the topic a
	// message names (IOTDA.014112).
	ErrNotSubscribed = errors.New("device has not subscribed to the topic")
)

// Command is a command from an application to a device.
type Command struct {
	CommandID   string          `json:"command_id"`
	ServiceID   string          `json:"service_id,omitempty"`
	CommandName string          `json:"command_name,omitempty"`
	Paras       json.RawMessage `json:"paras,omitempty"`
}

// CommandSender delivers a synchronous command to a connected device and
// waits (bounded by ctx) for its response body.
type CommandSender interface {
	SendCommand(ctx context.Context, d *Device, c Command) (json.RawMessage, error)
}

// PropertiesOp is what a properties request asks of a device.
type PropertiesOp string

// The properties operations (IoTDA: GET and PUT /devices/{id}/properties).
const (
	PropertiesGet PropertiesOp = "get"
	PropertiesSet PropertiesOp = "set"
)

// PropertiesRequest asks a device for its properties or to set them.
type PropertiesRequest struct {
	Op        PropertiesOp `json:"op"`
	RequestID string       `json:"request_id"`
	// ServiceID names the service a get asks for ("": all of them).
	ServiceID string `json:"service_id,omitempty"`
	// Services is what a set writes: IoTDA's
	// [{"service_id":..., "properties":{...}}], passed through as is.
	Services json.RawMessage `json:"services,omitempty"`
}

// PropertiesSender delivers a properties request to a connected device
// and waits (bounded by ctx) for its response body.
type PropertiesSender interface {
	SendProperties(ctx context.Context, d *Device, p PropertiesRequest) (json.RawMessage, error)
}

// DownMessage is a message from an application to a device.
type DownMessage struct {
	MessageID string `json:"message_id"`
	Name      string `json:"name,omitempty"`
	Payload   []byte `json:"payload"`
	// Topic is the full topic to publish on; empty means the protocol's
	// default downlink topic.
	Topic string `json:"topic,omitempty"`
}

// MessageSender delivers a downlink message to a connected device.
type MessageSender interface {
	// CheckMessage validates what the adapter will have to make of m
	// (its topic) before it is stored, the device connected or not; a
	// *ValidationError says what is wrong.
	CheckMessage(d *Device, m DownMessage) error
	// SendMessage writes m to the device's session: ErrNotConnected when
	// it has none (the message stays held), ErrNotSubscribed when the
	// device has not subscribed to m's topic.
	SendMessage(ctx context.Context, d *Device, m DownMessage) error
}

// Message is a message a device sent (or a notification it answered),
// kept so applications can read a device's recent data over REST.
type Message struct {
	MessageID string    `json:"message_id"`
	Topic     string    `json:"topic,omitempty"` // MQTT topic or LwM2M path
	Payload   []byte    `json:"payload"`
	Time      time.Time `json:"time"`
}
