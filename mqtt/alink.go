package mqtt

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry"
)

// Alink: the JSON request/reply protocol on Alibaba's /sys/ and /ext/
// topics. A request is {"id","version","params","method","sys"}; the
// platform answers on the request topic + "_reply" with
// {"id","code","data","message","method","version"}, the id echoed as
// sent (the Node SDK's ids are strings such as "1|exp-topic|...", C SDKs
// send numbers). "sys":{"ack":0} asks for no reply.

// Alibaba device error codes (reference §3, §5; things-go/aliyun-iot
// infra/code.go).
const (
	aliOK            = 200
	aliUnauthorized  = 401  // topo add: a sub-device's sign is wrong
	aliBadParams     = 460  // request parameter error
	aliSystemError   = 500  // system error
	aliNoSession     = 520  // logout: the sub-device is not logged in
	aliSubDeleted    = 521  // login: the sub-device was deleted
	aliSubDisabled   = 522  // login: the sub-device is disabled (frozen)
	aliDeviceAbsent  = 6100 // no such (sub-)device
	aliDisabled      = 6204 // topo add, sub register: the sub-device is disabled
	aliInvalidSign   = 6287 // login: the sub-device's sign is wrong
	aliDynRegOff     = 6288 // the sub-device's product has Dynamic Registration off
	aliAlreadyActive = 6289 // the sub-device's secret was delivered already
	aliTooManySubs   = 6400 // topo add: over the gateway's sub-device quota
	aliNoTopo        = 6401 // login: the sub-device is not attached to this gateway
	aliSelf          = 6402 // a gateway named itself as its sub-device
	aliOtherGateway  = 6619 // the sub-device is attached to another gateway
)

// alinkRequest is an Alink request; Params is decoded by each handler.
type alinkRequest struct {
	ID      json.RawMessage `json:"id"`
	Version string          `json:"version"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
	Sys     *struct {
		Ack *int `json:"ack"`
	} `json:"sys"`
}

// wantsReply is false when the request said "sys":{"ack":0}.
func (r alinkRequest) wantsReply() bool {
	return r.Sys == nil || r.Sys.Ack == nil || *r.Sys.Ack != 0
}

// errAlinkParams marks a request that does not have the expected shape.
var errAlinkParams = errors.New("request parameter error")

func parseAlinkRequest(payload []byte) (alinkRequest, error) {
	var r alinkRequest
	if err := json.Unmarshal(payload, &r); err != nil {
		return alinkRequest{}, fmt.Errorf("%w: body is not an Alink JSON request: %v", errAlinkParams, err)
	}
	return r, nil
}

// alinkAnswer is the outcome of a request.
type alinkAnswer struct {
	code    int
	message string
	data    any
}

func alinkOK(data any) alinkAnswer { return alinkAnswer{code: aliOK, message: "success", data: data} }

func alinkError(code int, message string) alinkAnswer {
	return alinkAnswer{code: code, message: message}
}

type alinkReply struct {
	ID      json.RawMessage `json:"id,omitempty"`
	Code    int             `json:"code"`
	Data    any             `json:"data,omitempty"`
	Message string          `json:"message"`
	Method  string          `json:"method,omitempty"`
	Version string          `json:"version"`
}

// writeAlinkReply publishes the answer to req on topic, at QoS 0, straight
// to the client (the Alibaba SDKs subscribe to their reply topics, the C
// SDKs do not need to).
func writeAlinkReply(cl *mochi.Client, topic string, req alinkRequest, a alinkAnswer) error {
	body, err := json.Marshal(alinkReply{ID: req.ID, Code: a.code, Data: a.data, Message: a.message,
		Method: req.Method, Version: "1.0"})
	if err != nil {
		return err
	}
	return writePublish(cl, topic, body)
}

// writePublish writes a QoS 0 PUBLISH to the client.
func writePublish(cl *mochi.Client, topic string, payload []byte) error {
	return cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   topic,
		Payload:     payload,
		Created:     time.Now().Unix(),
	})
}

// jsonText is a JSON string, or a JSON number kept as its literal text:
// the SDKs send timestamps either way (the Node SDK a number, the C SDKs
// a string), and a sign covers the text.
type jsonText string

func (t *jsonText) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = jsonText(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("want a string or a number, got %s", b)
	}
	*t = jsonText(n)
	return nil
}

// defaultModule is the shadow service of the properties of an Alibaba
// thing model's default module (identifiers without a module prefix).
const defaultModule = "default"

// alinkProperties maps the params of thing.event.property.post, an
// object of property identifiers, to shadow services:
//
//   - "identifier": v                 → service "default", property identifier = v
//   - "module:identifier": v          → service "module" (a custom thing-model
//     module), property identifier = v
//   - a value {"value": v, "time": ms} (exactly these keys, time optional)
//     → the property is v, and the latest time of a service's
//     properties is its event_time; otherwise the value is kept as sent
//     (a struct property stays an object).
//
// Services come out sorted by id.
func alinkProperties(params json.RawMessage) ([]registry.ServiceProperties, error) {
	var props map[string]json.RawMessage
	if err := json.Unmarshal(params, &props); err != nil || props == nil {
		return nil, fmt.Errorf(`%w: "params" is not an object of properties`, errAlinkParams)
	}
	if len(props) == 0 {
		return nil, fmt.Errorf(`%w: "params" has no properties`, errAlinkParams)
	}
	services := map[string]*registry.ServiceProperties{}
	for id, raw := range props {
		service, name := defaultModule, id
		if m, n, ok := strings.Cut(id, ":"); ok {
			service, name = m, n
		}
		if service == "" || name == "" {
			return nil, fmt.Errorf("%w: property identifier %q", errAlinkParams, id)
		}
		s := services[service]
		if s == nil {
			s = &registry.ServiceProperties{ServiceID: service, Properties: map[string]json.RawMessage{}}
			services[service] = s
		}
		if _, dup := s.Properties[name]; dup {
			// "T" and "default:T" name one property: which value won
			// would depend on map order.
			return nil, fmt.Errorf("%w: property %s:%s is given twice", errAlinkParams, service, name)
		}
		v, at := timedValue(raw)
		s.Properties[name] = v
		if at.After(s.EventTime) {
			s.EventTime = at
		}
	}
	out := make([]registry.ServiceProperties, 0, len(services))
	for _, s := range services {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b registry.ServiceProperties) int { return strings.Compare(a.ServiceID, b.ServiceID) })
	return out, nil
}

// timedValue unwraps Alink's {"value": v, "time": ms} form.
func timedValue(raw json.RawMessage) (json.RawMessage, time.Time) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil || obj == nil {
		return raw, time.Time{}
	}
	v, ok := obj["value"]
	if !ok || len(obj) > 2 {
		return raw, time.Time{}
	}
	t, hasTime := obj["time"]
	if len(obj) == 2 && !hasTime {
		return raw, time.Time{}
	}
	if !hasTime {
		return v, time.Time{}
	}
	var ms int64
	if json.Unmarshal(t, &ms) != nil {
		return raw, time.Time{}
	}
	return v, time.UnixMilli(ms).UTC()
}
