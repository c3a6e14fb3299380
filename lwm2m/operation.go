package lwm2m

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/registry"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// ServiceLwM2M is the service_id of asynchronous commands that are raw
// LwM2M operations; command_name names the operation.
const ServiceLwM2M = "LwM2M"

// The LwM2M operations an application can ask for.
const (
	OpRead            = "READ"
	OpWrite           = "WRITE"
	OpExecute         = "EXECUTE"
	OpObserve         = "OBSERVE"
	OpCancelObserve   = "CANCEL_OBSERVE"
	OpDiscover        = "DISCOVER"
	OpWriteAttributes = "WRITE_ATTRIBUTES"
	OpCreate          = "CREATE"
	OpDelete          = "DELETE"
)

// appCommandPath is /19/1/0, where Huawei's platform writes the bytes of
// any command that is not a raw LwM2M operation.
var appCommandPath = format.NewPath(19, 1, 0)

// Operation is one device management request, ready to send.
type Operation struct {
	Name string
	Path format.Path
	// Accept is the content format asked for by READ and OBSERVE; -1 has
	// the server choose from the client's registration (negotiate.go),
	// and perform records its choice here.
	Accept int
	// ContentFormat and Payload are the body of WRITE and CREATE.
	ContentFormat uint16
	Payload       []byte
	// Records are the values of a WRITE or CREATE with no Payload: they
	// are encoded when sent, in a format the client supports.
	Records []format.Record
	// Partial makes a WRITE a partial update (POST) instead of a replace
	// (PUT).
	Partial bool
	// Args are EXECUTE's arguments.
	Args string
	// Attributes are WRITE_ATTRIBUTES' query parameters ("pmin=10").
	Attributes []string
	// Paths are the paths of READ, OBSERVE and CANCEL_OBSERVE_COMPOSITE
	// (composite.go), whose Path is the root.
	Paths []format.Path
}

// lwm2mParas is the union of the paras of the LwM2M operations; which
// fields an operation reads is in the README.
type lwm2mParas struct {
	Path          string          `json:"path"`
	Accept        *int            `json:"accept"`
	ContentFormat *int            `json:"content_format"`
	Value         json.RawMessage `json:"value"`
	Kind          string          `json:"kind"`
	Values        []valueParas    `json:"values"`
	Mode          string          `json:"mode"`
	Args          *string         `json:"args"`
	Attributes    map[string]any  `json:"attributes"`
	Paths         []string        `json:"paths"`
}

type valueParas struct {
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
	Kind  string          `json:"kind"`
}

func badParas(format string, a ...any) error {
	return &registry.ValidationError{Field: "paras", Reason: fmt.Sprintf(format, a...)}
}

// commandOperation turns an asynchronous command into the operation that
// carries it: a raw LwM2M operation for service_id "LwM2M", else a Write
// of the command's bytes to /19/1/0 as opaque (the paras' "data" decoded
// from base64 when that is all they hold, else the paras' JSON text).
func commandOperation(serviceID, commandName string, paras json.RawMessage) (*Operation, error) {
	if serviceID != ServiceLwM2M {
		return &Operation{Name: OpWrite, Path: appCommandPath, ContentFormat: format.FormatOpaque,
			Payload: commandBytes(paras), Accept: -1}, nil
	}
	var p lwm2mParas
	dec := json.NewDecoder(bytes.NewReader(paras))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, badParas("LwM2M paras: %v", err)
	}
	return parseOperation(commandName, &p)
}

// commandBytes is the payload of a non-LwM2M command.
func commandBytes(paras json.RawMessage) []byte {
	var d map[string]json.RawMessage
	if json.Unmarshal(paras, &d) == nil && len(d) == 1 {
		var s string
		if raw, ok := d["data"]; ok && json.Unmarshal(raw, &s) == nil {
			if b, err := base64.StdEncoding.DecodeString(s); err == nil {
				return b
			}
		}
	}
	var compact bytes.Buffer
	if json.Compact(&compact, paras) == nil {
		return compact.Bytes()
	}
	return append([]byte(nil), paras...)
}

func parseOperation(name string, p *lwm2mParas) (*Operation, error) {
	if isComposite(name) {
		return parseComposite(name, p)
	}
	if len(p.Paths) > 0 {
		return nil, badParas("paths are for the composite operations")
	}
	if p.Path == "" {
		return nil, badParas("path is required")
	}
	path, err := format.ParsePath(p.Path)
	if err != nil {
		return nil, badParas("%v", err)
	}
	op := &Operation{Name: name, Path: path, Accept: -1}
	depth := path.Depth()
	if p.Accept != nil {
		if *p.Accept < 0 || *p.Accept > math.MaxUint16 {
			return nil, badParas("accept must be a content format number")
		}
		op.Accept = *p.Accept
	}
	switch name {
	case OpRead, OpObserve:
		if depth < 1 {
			return nil, badParas("%s needs an object, instance or resource path", name)
		}
	case OpDiscover, OpCancelObserve:
		if depth < 1 {
			return nil, badParas("%s needs an object, instance or resource path", name)
		}
	case OpExecute:
		if depth != 3 {
			return nil, badParas("EXECUTE needs a resource path /O/I/R")
		}
		if p.Args != nil {
			op.Args = *p.Args
		}
	case OpDelete:
		if depth != 2 {
			return nil, badParas("DELETE needs an object instance path /O/I")
		}
	case OpWriteAttributes:
		if depth < 1 || len(p.Attributes) == 0 {
			return nil, badParas("WRITE_ATTRIBUTES needs a path and attributes")
		}
		if op.Attributes, err = attributeQueries(p.Attributes); err != nil {
			return nil, err
		}
	case OpWrite, OpCreate:
		if err := writePayload(op, p); err != nil {
			return nil, err
		}
	default:
		return nil, badParas("unknown LwM2M command_name %q; one of READ, WRITE, EXECUTE, OBSERVE, CANCEL_OBSERVE, DISCOVER, WRITE_ATTRIBUTES, CREATE, DELETE, READ_COMPOSITE, OBSERVE_COMPOSITE, CANCEL_OBSERVE_COMPOSITE, WRITE_COMPOSITE", name)
	}
	return op, nil
}

// attributeNames are the LwM2M <NOTIFICATION> attributes.
var attributeNames = map[string]bool{"pmin": true, "pmax": true, "gt": true, "lt": true, "st": true, "epmin": true, "epmax": true, "edge": true, "con": true, "hqmax": true}

func attributeQueries(attrs map[string]any) ([]string, error) {
	out := make([]string, 0, len(attrs))
	for k, v := range attrs {
		if !attributeNames[k] {
			return nil, badParas("unknown attribute %q", k)
		}
		switch v := v.(type) {
		case nil:
			out = append(out, k) // a bare name removes the attribute
		case float64:
			out = append(out, k+"="+strconv.FormatFloat(v, 'f', -1, 64))
		default:
			return nil, badParas("attribute %s must be a number or null", k)
		}
	}
	sort.Strings(out)
	return out, nil
}

// kinds maps the kind names of paras to format kinds.
var kinds = map[string]format.Kind{
	"string": format.KindString, "integer": format.KindInteger, "unsigned": format.KindUnsigned,
	"float": format.KindFloat, "boolean": format.KindBoolean, "opaque": format.KindOpaque,
	"time": format.KindTime, "objlnk": format.KindObjLink,
}

// writePayload reads the values of a WRITE or CREATE. With content_format
// they are encoded now; without, they are kept as Records for perform to
// encode in a format the client supports (see negotiate.go).
func writePayload(op *Operation, p *lwm2mParas) error {
	depth := op.Path.Depth()
	vals := p.Values
	if len(p.Value) > 0 {
		if len(vals) > 0 {
			return badParas("give value or values, not both")
		}
		vals = []valueParas{{Path: p.Path, Value: p.Value, Kind: p.Kind}}
	}
	if len(vals) == 0 {
		return badParas("%s needs value or values", op.Name)
	}
	switch op.Name {
	case OpWrite:
		if depth < 2 {
			return badParas("WRITE needs an instance or resource path")
		}
		switch p.Mode {
		case "", "replace":
		case "update":
			op.Partial = true
		default:
			return badParas("mode must be replace or update")
		}
	case OpCreate:
		if depth != 1 && depth != 2 {
			return badParas("CREATE needs an object path (or /O/I to choose the instance)")
		}
		if p.Mode != "" {
			return badParas("mode is for WRITE")
		}
	}
	recs := make([]format.Record, 0, len(vals))
	for i, v := range vals {
		rp := op.Path
		if v.Path != "" {
			var err error
			if rp, err = format.ParsePath(v.Path); err != nil {
				return badParas("values[%d]: %v", i, err)
			}
		}
		if !op.Path.Contains(rp) || rp.Depth() < 3 {
			return badParas("values[%d]: %s is not a resource under %s", i, rp, op.Path)
		}
		val, err := valueOf(rp, v)
		if err != nil {
			return badParas("values[%d] (%s): %v", i, rp, err)
		}
		recs = append(recs, format.Record{Path: rp, Value: val})
	}
	if p.ContentFormat == nil {
		op.Records = recs
		return nil
	}
	if *p.ContentFormat < 0 || *p.ContentFormat > math.MaxUint16 {
		return badParas("content_format must be a content format number")
	}
	op.ContentFormat = uint16(*p.ContentFormat)
	var err error
	if op.Payload, err = format.Encode(op.ContentFormat, op.Path, recs); err != nil {
		return badParas("cannot encode the values as content format %d: %v", op.ContentFormat, err)
	}
	return nil
}

// body returns the Content-Format and payload of a WRITE or CREATE to r's
// client: the Payload as given, else the Records in the format
// writeFormat picks for r.
func (op *Operation) body(r *Registration) (uint16, []byte, error) {
	if op.Payload != nil || len(op.Records) == 0 {
		return op.ContentFormat, op.Payload, nil
	}
	ct := r.writeFormat(op.Path, op.Records)
	b, err := format.Encode(ct, op.Path, op.Records)
	if err != nil {
		return 0, nil, fmt.Errorf("encoding the values as content format %d, which the client supports: %w", ct, err)
	}
	return ct, b, nil
}

// valueOf reads a JSON value as the kind paras name, else the kind the
// object model gives the resource, else the kind the JSON suggests.
func valueOf(p format.Path, v valueParas) (format.Value, error) {
	var val format.Value
	if err := json.Unmarshal(v.Value, &val); err != nil {
		return val, err
	}
	want, ok := format.DefaultModel().Kind(p.Object, p.Resource)
	if v.Kind != "" {
		if want, ok = kinds[strings.ToLower(v.Kind)]; !ok {
			return val, fmt.Errorf("unknown kind %q", v.Kind)
		}
	}
	if !ok || want == format.KindNone || want == val.Kind() {
		return val, nil
	}
	return val.As(want)
}

// recordView is how a decoded value appears in a command result or a
// stored notification.
type recordView struct {
	Path  string       `json:"path"`
	Kind  string       `json:"kind"`
	Value format.Value `json:"value"`
	Time  float64      `json:"time,omitempty"`
}

func recordViews(recs []format.Record) []recordView {
	out := make([]recordView, len(recs))
	for i, r := range recs {
		out[i] = recordView{Path: r.Path.String(), Kind: r.Value.Kind().String(), Value: r.Value, Time: r.Time}
	}
	return out
}

// commandResult is the result of an asynchronous command: the client's
// response code, its values (READ, OBSERVE), links (DISCOVER), the new
// instance (CREATE) or its diagnostic (errors).
type commandResult struct {
	Code          string       `json:"code"`
	ContentFormat *int         `json:"content_format,omitempty"`
	Values        []recordView `json:"values,omitempty"`
	Links         []linkView   `json:"links,omitempty"`
	Location      string       `json:"location,omitempty"`
	Payload       []byte       `json:"payload,omitempty"` // base64; when not decodable
	DecodeError   string       `json:"decode_error,omitempty"`
	Diagnostic    string       `json:"diagnostic,omitempty"`
	Error         string       `json:"error,omitempty"`
}

// linkView is a link of a DISCOVER result.
type linkView struct {
	Target string            `json:"target"`
	Params map[string]string `json:"params,omitempty"`
}

// resultOf builds the result of op from the client's response and says
// whether the command succeeded.
func resultOf(op *Operation, resp *Response) (commandResult, bool) {
	res := commandResult{Code: codeString(resp.Code)}
	ok := resp.Code >= codes.Created && resp.Code < codes.BadRequest
	if resp.ContentFormat >= 0 {
		ct := resp.ContentFormat
		res.ContentFormat = &ct
	}
	switch {
	case !ok:
		res.Diagnostic = string(resp.Payload)
	case op.Name == OpDiscover:
		links, err := format.ParseLinks(resp.Payload)
		if err != nil {
			res.Payload, res.DecodeError = resp.Payload, err.Error()
		}
		for _, l := range links {
			res.Links = append(res.Links, linkView{Target: l.Target, Params: l.Params})
		}
	case op.Name == OpRead || op.Name == OpObserve || op.Name == OpReadComposite || op.Name == OpObserveComposite:
		ct := resp.ContentFormat
		if ct < 0 {
			// A client may omit the format: it answered in the one asked
			// for, else (LwM2M 1.0) plain text for a resource, TLV above.
			switch {
			case op.Accept >= 0:
				ct = op.Accept
			case op.Path.Depth() >= 3:
				ct = int(format.FormatText)
			default:
				ct = int(format.FormatTLV)
			}
		}
		recs, err := format.Decode(uint16(ct), op.Path, resp.Payload, format.DefaultModel())
		if err != nil {
			res.Payload, res.DecodeError = resp.Payload, err.Error()
		} else {
			res.Values = recordViews(recs)
		}
	case op.Name == OpCreate:
		res.Location = resp.Location
	}
	return res, ok
}

// codeString renders a CoAP code as "2.05".
func codeString(c codes.Code) string {
	return strconv.Itoa(int(c>>5)) + "." + fmt.Sprintf("%02d", int(c&0x1f))
}
