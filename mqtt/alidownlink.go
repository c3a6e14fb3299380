package mqtt

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/iotgate/iotgate/registry"
)

// Alibaba downlinks: an application's property set and synchronous
// command reach a device whose live session speaks the Alibaba dialect
// (or a sub-device logged in through an Alibaba gateway, whose session
// carries them) on its own Alink topics, and the device's answer
// completes the REST request (checked against npm alibabacloud-iot-device-sdk 1.2.8, whose
// onProps and onService they drive):
//
//	property set  /sys/{pk}/{dn}/thing/service/property/set
//	              {"id","version":"1.0","params":{identifier: value},
//	               "method":"thing.service.property.set"}
//	              answered on .../property/set_reply, matched by its "id"
//	command       /sys/{pk}/{dn}/rrpc/request/{messageId}
//	              {"id": messageId,"version":"1.0","params": paras,
//	               "method":"thing.service.{identifier}"}
//	              answered on /sys/{pk}/{dn}/rrpc/response/{messageId}
//	              (matched by the topic, whatever the body's id), or on
//	              /sys/{pk}/{dn}/thing/service/{identifier}_reply with the
//	              request's id echoed
//
// IoTDA's commands are synchronous, and Alibaba carries synchronous
// service calls over RRPC: the Node SDK subscribes to rrpc/request/+ at
// connect, hands the request to the onService callback its method names,
// and reply(..., 'sync') answers on rrpc/response/{messageId}. A device
// that answers the asynchronous way instead (thing/service/{id}_reply)
// is heard too if it echoes the request's id, which the SDK's default
// reply replaces with a fresh one.
//
// Identifiers follow the property posts' mapping (alink.go): service
// "default" (or none) is the thing model's default module, any other
// service id a custom module. Property p of service "default" is "p", of
// service "m" "m:p"; command c of service "m" is the service "m:c".
//
// The answer becomes the IoTDA device response applications parse:
// {"result_code": 0} for Alink code 200, the device's code otherwise, its
// message as "result_desc" and, for a command, its data as "paras". An
// answer that is not an Alink reply is passed on as the device sent it.
// Offline and timeout are SendCommand's (registry.ErrNotConnected,
// registry.ErrTimeout).
//
// Messages (messages.go) may name the device's custom topics
// /{pk}/{dn}/user/...; a session of this dialect receives them, as on
// Alibaba, only on topics it subscribed to.

// alibabaConn returns the connection of the device's live session if it
// speaks the Alibaba dialect: the wire format is the session's, as a
// device may connect either way with the same credentials.
func (s *Server) alibabaConn(deviceID string) (*conn, bool) {
	cl, ok := s.session(deviceID)
	if !ok {
		return nil, false
	}
	c := s.conns.get(cl)
	return c, c != nil && c.alibaba
}

// aliTarget is where an Alink request to a device goes.
type aliTarget struct {
	via  string // the device whose session carries it
	self owner  // the device as its topics name it
}

// alibabaTarget finds the Alibaba-dialect session that carries requests
// to a device: its own, or that of the Alibaba gateway it is logged in
// through, which publishes and answers on the sub-device's topics.
func (s *Server) alibabaTarget(deviceID string) (aliTarget, bool) {
	if c, ok := s.alibabaConn(deviceID); ok {
		return aliTarget{via: deviceID, self: c.self}, true
	}
	if p, ok := s.conns.gatewayOf(deviceID); ok && p.conn.alibaba {
		return aliTarget{via: p.conn.device, self: p.owner}, true
	}
	return aliTarget{}, false
}

// alinkID numbers a platform request (its Alink id, and an RRPC call's
// messageId): a decimal string, as the C SDKs expect.
func (s *Server) alinkID() string { return strconv.FormatInt(s.notifyIDs.Add(1), 10) }

// alinkDownRequest is an Alink request from the platform.
type alinkDownRequest struct {
	ID      string          `json:"id"`
	Version string          `json:"version"`
	Params  json.RawMessage `json:"params"`
	Method  string          `json:"method"`
}

// Alink methods of the platform's requests.
const (
	methodPropertySet   = "thing.service.property.set"
	methodServicePrefix = "thing.service."
)

// errAliPropertiesGet refuses a property query to an Alibaba session:
// Alink devices answer none (the Node SDK has no handler for it); what
// they reported is in the shadow.
var errAliPropertiesGet = fmt.Errorf("%w: property queries do not reach devices connected the Alibaba way "+
	"(Alink devices answer none; read their reported properties from the device shadow)", registry.ErrUnsupported)

// aliProperties sends a property set as thing.service.property.set and
// waits, until ctx ends, for the device's set_reply.
func (s *Server) aliProperties(ctx context.Context, to aliTarget, d *registry.Device, p registry.PropertiesRequest) (json.RawMessage, error) {
	switch p.Op {
	case registry.PropertiesSet:
	case registry.PropertiesGet:
		return nil, errAliPropertiesGet
	default:
		return nil, fmt.Errorf("mqtt: unknown properties operation %q", p.Op)
	}
	params, err := alinkSetParams(p.Services)
	if err != nil {
		return nil, err
	}
	id := s.alinkID()
	body, err := json.Marshal(alinkDownRequest{ID: id, Version: "1.0", Params: params, Method: methodPropertySet})
	if err != nil {
		return nil, fmt.Errorf("mqtt: encode property set: %w", err)
	}
	resp, err := s.requestVia(ctx, uplinkAlinkSetReply, d.DeviceID, to.via, id, aliSysTopic(to.self, "thing/service/property/set"), body)
	if err != nil {
		return nil, err
	}
	return iotdaResponse(resp, false), nil
}

// aliCallService sends a command as an RRPC call of the thing-model
// service it names and waits, until ctx ends, for the device's answer.
func (s *Server) aliCallService(ctx context.Context, to aliTarget, d *registry.Device, cmd registry.Command) (json.RawMessage, error) {
	ident, err := alinkServiceIdentifier(cmd.ServiceID, cmd.CommandName)
	if err != nil {
		return nil, err
	}
	params := cmd.Paras
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	id := s.alinkID()
	body, err := json.Marshal(alinkDownRequest{ID: id, Version: "1.0", Params: params, Method: methodServicePrefix + ident})
	if err != nil {
		return nil, fmt.Errorf("mqtt: encode service call: %w", err)
	}
	// Both answers, RRPC's and the service's _reply, complete this one
	// wait (see alinkResponse).
	resp, err := s.requestVia(ctx, uplinkAlinkServiceReply, d.DeviceID, to.via, id, aliSysTopic(to.self, "rrpc/request/"+id), body)
	if err != nil {
		return nil, err
	}
	return iotdaResponse(resp, true), nil
}

// aliMayReceiveMessage reports whether topic is one of the device's
// custom Alibaba topics, /{product_id}/{node_id}/user/..., on which an
// application may send it messages.
func aliMayReceiveMessage(d *registry.Device, topic string) bool {
	o, suffix, ok := aliUserSpace.split(topic)
	return ok && o == owner{a: d.ProductID, b: d.NodeID} && aliUserSpace.mayReceive(suffix)
}

// aliSysTopic is /sys/{pk}/{dn}/{suffix}.
func aliSysTopic(self owner, suffix string) string {
	return "/sys/" + self.a + "/" + self.b + "/" + suffix
}

// alinkSetParams maps IoTDA's [{"service_id", "properties":{...}}] to the
// params of thing.service.property.set, an object of identifiers.
func alinkSetParams(services json.RawMessage) (json.RawMessage, error) {
	var in []struct {
		ServiceID  string                     `json:"service_id"`
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(services, &in); err != nil {
		return nil, &registry.ValidationError{Field: "services", Reason: "must be an array of {service_id, properties}"}
	}
	params := map[string]json.RawMessage{}
	for _, sv := range in {
		prefix := ""
		if sv.ServiceID != "" && sv.ServiceID != defaultModule {
			if err := checkAlinkIdentifier("service_id", sv.ServiceID); err != nil {
				return nil, err
			}
			prefix = sv.ServiceID + ":"
		}
		for name, v := range sv.Properties {
			if err := checkAlinkIdentifier("properties", name); err != nil {
				return nil, err
			}
			key := prefix + name
			if _, dup := params[key]; dup {
				return nil, &registry.ValidationError{Field: "services",
					Reason: fmt.Sprintf("property %q is set twice (by two services of one id; no service_id is %q)", key, defaultModule)}
			}
			params[key] = v
		}
	}
	if len(params) == 0 {
		return nil, &registry.ValidationError{Field: "services", Reason: "sets no property"}
	}
	return json.Marshal(params)
}

// alinkServiceIdentifier is the thing-model service a command calls:
// command_name in the default module ("default" or no service_id), else
// "{service_id}:{command_name}".
func alinkServiceIdentifier(serviceID, commandName string) (string, error) {
	if commandName == "" {
		return "", &registry.ValidationError{Field: "command_name",
			Reason: "is required for a device connected the Alibaba way: it names the thing-model service called"}
	}
	if err := checkAlinkIdentifier("command_name", commandName); err != nil {
		return "", err
	}
	if serviceID == "" || serviceID == defaultModule {
		return commandName, nil
	}
	if err := checkAlinkIdentifier("service_id", serviceID); err != nil {
		return "", err
	}
	return serviceID + ":" + commandName, nil
}

// checkAlinkIdentifier refuses what cannot be one part of an Alink
// identifier: empty, ':' (the module separator), or a character a topic
// level cannot carry as is ('/', '+', '#', NUL).
func checkAlinkIdentifier(field, v string) error {
	switch {
	case v == "":
		return &registry.ValidationError{Field: field, Reason: "an identifier must not be empty"}
	case strings.ContainsAny(v, ":/+#\x00"):
		return &registry.ValidationError{Field: field,
			Reason: fmt.Sprintf("%q is not a thing-model identifier (no ':', '/', '+', '#')", v)}
	}
	return nil
}

// iotdaResponse maps a device's Alink reply to the IoTDA response body;
// anything else is returned as is.
func iotdaResponse(b json.RawMessage, command bool) json.RawMessage {
	var r struct {
		Code    *jsonText       `json:"code"`
		Data    json.RawMessage `json:"data"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(b, &r) != nil || r.Code == nil {
		return b
	}
	code, err := strconv.Atoi(string(*r.Code))
	if err != nil {
		return b
	}
	out := struct {
		ResultCode int             `json:"result_code"`
		ResultDesc string          `json:"result_desc,omitempty"`
		Paras      json.RawMessage `json:"paras,omitempty"`
	}{ResultDesc: r.Message}
	if code != aliOK {
		out.ResultCode = code
	}
	if command && len(r.Data) > 0 && string(r.Data) != "null" {
		out.Paras = r.Data
	}
	res, err := json.Marshal(out)
	if err != nil {
		return b
	}
	return res
}

// alinkResponse hands a device's answer to a platform request to the
// request waiting for it: an RRPC response by the messageId its topic
// ends in, a property set or service reply by the id in its body.
func (h *uplinkHook) alinkResponse(kind uplink, r route, payload []byte) error {
	var id string
	switch {
	case kind == uplinkRRPCResponse:
		id = r.suffix[strings.LastIndexByte(r.suffix, '/')+1:]
		kind = uplinkAlinkServiceReply
	case kind == uplinkAlinkServiceReply && !strings.HasSuffix(r.suffix, "_reply"):
		h.log.Debug("uplink discarded: nothing consumes it", "device", r.device, "kind", uplinkAlinkOther, "suffix", r.suffix)
		return nil
	default:
		var rep struct {
			ID jsonText `json:"id"`
		}
		if err := json.Unmarshal(payload, &rep); err != nil || rep.ID == "" {
			return fmt.Errorf("%w: a reply must carry its request's id", errAlinkParams)
		}
		id = string(rep.ID)
	}
	if !h.responses.resolve(kind, r.device, id, payload) {
		h.log.Info("response for no waiting request (late or unknown)", "device", r.device, "kind", kind, "request_id", id)
	}
	return nil
}
