package mqtt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/iotgate/iotgate/registry"
)

// pendingCommands pairs synchronous requests (commands, properties get
// and set) with their responses. A response counts only from the device
// the request went to (its topic is under that device's prefix, which
// only that device may publish to) and on the response topic of the
// request's kind.
type pendingCommands struct {
	mu      sync.Mutex
	waiting map[commandKey]chan []byte
}

type commandKey struct {
	kind       uplink // the response topic's kind
	device, id string
}

func newPendingCommands() *pendingCommands {
	return &pendingCommands{waiting: make(map[commandKey]chan []byte)}
}

// expect registers interest in a response; done must be called once the
// caller stops waiting.
func (p *pendingCommands) expect(kind uplink, device, id string) (resp <-chan []byte, done func(), err error) {
	k := commandKey{kind, device, id}
	ch := make(chan []byte, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, dup := p.waiting[k]; dup {
		return nil, nil, fmt.Errorf("request %s to device %s is already waiting for its %s", id, device, kind)
	}
	p.waiting[k] = ch
	return ch, func() {
		p.mu.Lock()
		if p.waiting[k] == ch {
			delete(p.waiting, k)
		}
		p.mu.Unlock()
	}, nil
}

// resolve hands a response to its waiting command; false if none waits.
func (p *pendingCommands) resolve(kind uplink, device, id string, body []byte) bool {
	k := commandKey{kind, device, id}
	p.mu.Lock()
	ch, ok := p.waiting[k]
	delete(p.waiting, k)
	p.mu.Unlock()
	if ok {
		ch <- body // buffered, and only one resolve finds ch
	}
	return ok
}

// commandRequest is what a device receives (reference §4.3).
type commandRequest struct {
	ObjectDeviceID string          `json:"object_device_id"`
	ServiceID      string          `json:"service_id,omitempty"`
	CommandName    string          `json:"command_name,omitempty"`
	Paras          json.RawMessage `json:"paras,omitempty"`
}

// SendCommand publishes a synchronous command to
// $oc/devices/{id}/sys/commands/request_id={command_id} (for a sub-device
// online through an IoTDA gateway, the gateway's, object_device_id naming
// the sub-device) and waits, until
// ctx ends, for the device's .../sys/commands/response/request_id=... It
// returns the response body as JSON (a body that is not JSON is returned
// as a JSON string), registry.ErrNotConnected if the device has no
// session, registry.ErrTimeout if ctx's deadline passed first.
func (s *Server) SendCommand(ctx context.Context, d *registry.Device, c registry.Command) (json.RawMessage, error) {
	if c.CommandID == "" {
		return nil, errors.New("mqtt: command has no command_id")
	}
	if to, ok := s.alibabaTarget(d.DeviceID); ok {
		return s.aliCallService(ctx, to, d, c)
	}
	body, err := json.Marshal(commandRequest{ObjectDeviceID: d.DeviceID, ServiceID: c.ServiceID,
		CommandName: c.CommandName, Paras: c.Paras})
	if err != nil {
		return nil, fmt.Errorf("mqtt: encode command: %w", err)
	}
	to := s.carrier(d.DeviceID) // a sub-device's: its gateway's topic
	return s.request(ctx, uplinkCommandResponse, to, c.CommandID, commandTopic(to, c.CommandID), body)
}

// request publishes a synchronous request to topic and waits, until ctx
// ends, for the device's answer on the response topic of kind with the
// same request id.
func (s *Server) request(ctx context.Context, kind uplink, deviceID, id, topic string, body []byte) (json.RawMessage, error) {
	return s.requestVia(ctx, kind, deviceID, deviceID, id, topic, body)
}

// requestVia is request for a device whose topics another device's
// session carries (an Alibaba sub-device's, its gateway's): the request
// goes out on via's session, the answer counts from deviceID's topics.
func (s *Server) requestVia(ctx context.Context, kind uplink, deviceID, via, id, topic string, body []byte) (json.RawMessage, error) {
	resp, done, err := s.commands.expect(kind, deviceID, id)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := s.deliver(ctx, via, topic, body); err != nil {
		return nil, err
	}
	s.log.Debug("request sent", "device", deviceID, "via", via, "topic", topic)
	select {
	case b := <-resp:
		return asJSON(b), nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, registry.ErrTimeout
		}
		return nil, ctx.Err()
	}
}

// asJSON returns b if it is JSON, else b as a JSON string.
func asJSON(b []byte) json.RawMessage {
	if t := bytes.TrimSpace(b); json.Valid(t) {
		return append(json.RawMessage(nil), t...)
	}
	s, _ := json.Marshal(string(b))
	return s
}
