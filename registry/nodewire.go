package registry

import (
	"encoding/json"
	"errors"
	"fmt"
)

// The requests one node's router sends another's over NodeLink, and the
// answers: a small versioned JSON envelope. A node refuses a version or a
// kind it does not know with a clear error rather than guess, so nodes of
// different releases fail loudly during a rolling upgrade.

// nodeWireVersion is the envelope's version.
const nodeWireVersion = 1

// nodeRequestKind names what a request asks of the node holding a
// device's session.
type nodeRequestKind string

const (
	// nodeCommand: deliver a synchronous command and answer the device's
	// response.
	nodeCommand nodeRequestKind = "command"
	// nodeProperties: deliver a properties get or set and answer the
	// device's response.
	nodeProperties nodeRequestKind = "properties"
	// nodeAsyncCommand: the device has a new PENDING asynchronous command
	// (already stored); hand it to the adapter.
	nodeAsyncCommand nodeRequestKind = "async_command"
	// nodeMessages: the device has PENDING downlink messages (already
	// stored); deliver them, and answer once the pass has ended.
	nodeMessages nodeRequestKind = "messages"
	// nodeKick: close this node's sessions of the device older than
	// Session: another node took the device over with Session (Reason
	// empty), or the device was deleted, frozen or had its credentials
	// changed (Reason says which).
	nodeKick nodeRequestKind = "kick"
	// nodeSubDevices: the gateway's sub-devices changed (SubDevices);
	// tell it.
	nodeSubDevices nodeRequestKind = "sub_devices"
)

// nodeRequest is one request; fields beyond Kind and Device are per kind.
type nodeRequest struct {
	V       int             `json:"v"`
	Kind    nodeRequestKind `json:"kind"`
	Device  string          `json:"device"`
	Command *Command        `json:"command,omitempty"`    // command
	Timeout int64           `json:"timeout_ms,omitempty"` // command, properties: how long the device may take
	Now     bool            `json:"now,omitempty"`        // async_command: send_strategy immediately
	Session Session         `json:"session,omitempty"`    // kick: sessions older than this close
	Reason  string          `json:"reason,omitempty"`     // kick: what Kickers are told; "": taken over

	Properties *PropertiesRequest `json:"properties,omitempty"`  // properties
	SubDevices *SubDeviceChange   `json:"sub_devices,omitempty"` // sub_devices
}

// nodeAnswer is the answer to a request: Body (a command's response) or
// an error, Code telling its kind apart.
type nodeAnswer struct {
	V     int             `json:"v"`
	Body  json.RawMessage `json:"body,omitempty"`
	Code  nodeErrorCode   `json:"code,omitempty"`
	Error string          `json:"error,omitempty"`
	// Field is an invalid request's field (Code "invalid"; Error is then
	// the reason), so the refusal is as specific as on the session's node.
	Field string `json:"field,omitempty"`
}

// nodeErrorCode is the kind of error an answer carries.
type nodeErrorCode string

const (
	codeNotConnected  nodeErrorCode = "not_connected"
	codeTimeout       nodeErrorCode = "timeout"
	codeUnsupported   nodeErrorCode = "unsupported"
	codeInvalid       nodeErrorCode = "invalid" // a *ValidationError: what the device's adapter cannot carry
	codeNotSubscribed nodeErrorCode = "not_subscribed"
	codeNotFound      nodeErrorCode = "not_found"
	codeBadRequest    nodeErrorCode = "bad_request"
	codeFailed        nodeErrorCode = "failed" // any other error
)

// wireErrors maps the errors that cross nodes to their codes, both ways.
var wireErrors = []struct {
	code nodeErrorCode
	err  error
}{
	{codeNotConnected, ErrNotConnected},
	{codeTimeout, ErrTimeout},
	{codeUnsupported, ErrUnsupported},
	{codeNotSubscribed, ErrNotSubscribed},
	{codeNotFound, ErrNotFound},
}

// ErrBadNodeRequest: a node refused a request it cannot read (another
// version, an unknown kind).
var ErrBadNodeRequest = errors.New("node request refused")

// RemoteError is an error another node answered a request with.
type RemoteError struct {
	Node string
	Msg  string
	err  error // the sentinel its code names, if any
}

func (e *RemoteError) Error() string { return fmt.Sprintf("node %s: %s", e.Node, e.Msg) }

func (e *RemoteError) Unwrap() error { return e.err }

func encodeNodeRequest(req nodeRequest) ([]byte, error) {
	req.V = nodeWireVersion
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode %s request: %w", req.Kind, err)
	}
	return b, nil
}

// decodeNodeRequest reads a request, refusing other versions and kinds.
func decodeNodeRequest(b []byte) (nodeRequest, error) {
	var req nodeRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return req, fmt.Errorf("%w: not a node request: %v", ErrBadNodeRequest, err)
	}
	if req.V != nodeWireVersion {
		return req, fmt.Errorf("%w: version %d, this node speaks %d", ErrBadNodeRequest, req.V, nodeWireVersion)
	}
	switch req.Kind {
	case nodeCommand:
		if req.Command == nil {
			return req, fmt.Errorf("%w: command request without a command", ErrBadNodeRequest)
		}
	case nodeProperties:
		if req.Properties == nil || (req.Properties.Op != PropertiesGet && req.Properties.Op != PropertiesSet) {
			return req, fmt.Errorf("%w: properties request without a get or set", ErrBadNodeRequest)
		}
	case nodeSubDevices:
		if req.SubDevices == nil {
			return req, fmt.Errorf("%w: sub-devices request without a change", ErrBadNodeRequest)
		}
	case nodeAsyncCommand, nodeMessages, nodeKick:
	default:
		return req, fmt.Errorf("%w: unknown kind %q", ErrBadNodeRequest, req.Kind)
	}
	if req.Device == "" {
		return req, fmt.Errorf("%w: %s request names no device", ErrBadNodeRequest, req.Kind)
	}
	return req, nil
}

// answerOf encodes the outcome of a request.
func answerOf(body json.RawMessage, err error) []byte {
	a := nodeAnswer{V: nodeWireVersion, Body: body}
	if err != nil {
		a.Body, a.Code, a.Error = nil, codeFailed, err.Error()
		if errors.Is(err, ErrBadNodeRequest) {
			a.Code = codeBadRequest
		}
		for _, w := range wireErrors {
			if errors.Is(err, w.err) {
				a.Code = w.code
				break
			}
		}
		var ve *ValidationError
		if errors.As(err, &ve) {
			a.Code, a.Field, a.Error = codeInvalid, ve.Field, ve.Reason
		}
	}
	b, mErr := json.Marshal(a)
	if mErr != nil { // a RawMessage body that is not JSON
		b, _ = json.Marshal(nodeAnswer{V: nodeWireVersion, Code: codeFailed, Error: "encode answer: " + mErr.Error()})
	}
	return b
}

// decodeNodeAnswer reads node's answer: its body, or its error (which
// unwraps to the sentinel its code names).
func decodeNodeAnswer(node string, b []byte) (json.RawMessage, error) {
	var a nodeAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("node %s: unreadable answer: %w", node, err)
	}
	if a.V != nodeWireVersion {
		return nil, fmt.Errorf("node %s: answer version %d, this node speaks %d", node, a.V, nodeWireVersion)
	}
	if a.Code == "" {
		return a.Body, nil
	}
	e := &RemoteError{Node: node, Msg: a.Error}
	switch a.Code {
	case codeBadRequest:
		e.err = ErrBadNodeRequest
	case codeInvalid:
		e.err = &ValidationError{Field: a.Field, Reason: a.Error}
	}
	for _, w := range wireErrors {
		if w.code == a.Code {
			e.err = w.err
		}
	}
	return nil, e
}
