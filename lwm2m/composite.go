package lwm2m

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// The composite operations of LwM2M 1.1 (TS Core: Read-Composite,
// Write-Composite, Observe-Composite; RFC 8132 for FETCH and iPATCH):
// several paths in one request on the client's root, in SenML JSON (110)
// or SenML CBOR (112).
//
//   - READ_COMPOSITE: FETCH / whose body is a pack of names only
//     ([{"n":"/3/0/0"},{"n":"/1/0/1"}]); the 2.05 is a pack of values.
//   - OBSERVE_COMPOSITE: the same FETCH with Observe 0; every
//     notification is a pack of the values under all the paths.
//   - CANCEL_OBSERVE_COMPOSITE: the same FETCH with Observe 1 on the
//     observation's token (RFC 7641 §3.6).
//   - WRITE_COMPOSITE: iPATCH / whose body is a pack of values.

// The composite operations an application can ask for.
const (
	OpReadComposite          = "READ_COMPOSITE"
	OpObserveComposite       = "OBSERVE_COMPOSITE"
	OpCancelObserveComposite = "CANCEL_OBSERVE_COMPOSITE"
	OpWriteComposite         = "WRITE_COMPOSITE"
)

// CoAP's FETCH and iPATCH (RFC 8132), which go-coap has no names for.
const (
	codeFETCH  codes.Code = 5
	codeIPATCH codes.Code = 7
)

// maxCompositePaths bounds the paths (or values) of one composite
// operation: a request carries them all in one pack.
const maxCompositePaths = 64

// errNoComposite: the client cannot take composite operations.
var errNoComposite = errors.New("composite operations need an LwM2M 1.1 client that speaks SenML JSON (110) or SenML CBOR (112)")

func isComposite(name string) bool {
	switch name {
	case OpReadComposite, OpObserveComposite, OpCancelObserveComposite, OpWriteComposite:
		return true
	}
	return false
}

// isSenML reports whether ct is one of the composite operations' formats.
func isSenML(ct int) bool {
	return ct == int(format.FormatSenMLJSON) || ct == int(format.FormatSenMLCBOR)
}

// parseComposite reads the paras of a composite operation: "paths" for
// READ, OBSERVE and CANCEL_OBSERVE_COMPOSITE, "values" (each with its
// path) for WRITE_COMPOSITE; "accept" and "content_format" may pick
// SenML JSON or CBOR. The operation's Path is the root, where the request
// goes.
func parseComposite(name string, p *lwm2mParas) (*Operation, error) {
	if p.Path != "" || len(p.Value) > 0 || p.Kind != "" || p.Mode != "" || p.Args != nil || len(p.Attributes) > 0 {
		return nil, badParas("%s takes paths (or values), accept and content_format only", name)
	}
	op := &Operation{Name: name, Path: format.NewPath(), Accept: -1}
	ct := -1
	if p.ContentFormat != nil {
		if !isSenML(*p.ContentFormat) {
			return nil, badParas("content_format of %s must be 110 (SenML JSON) or 112 (SenML CBOR)", name)
		}
		ct = *p.ContentFormat
	}
	if p.Accept != nil {
		if name == OpWriteComposite || !isSenML(*p.Accept) {
			return nil, badParas("accept of %s must be 110 (SenML JSON) or 112 (SenML CBOR)", name)
		}
		op.Accept = *p.Accept
	}
	if name == OpWriteComposite {
		if err := compositeValues(op, p); err != nil {
			return nil, err
		}
		return op, encodeComposite(op, ct)
	}
	if len(p.Values) > 0 {
		return nil, badParas("%s takes paths, not values", name)
	}
	if len(p.Paths) == 0 || len(p.Paths) > maxCompositePaths {
		return nil, badParas("%s needs 1 to %d paths", name, maxCompositePaths)
	}
	seen := make(map[format.Path]bool, len(p.Paths))
	for i, s := range p.Paths {
		path, err := format.ParsePath(s)
		if err != nil {
			return nil, badParas("paths[%d]: %v", i, err)
		}
		if path.Depth() < 1 {
			return nil, badParas("paths[%d]: %s needs object, instance or resource paths", i, name)
		}
		if seen[path] {
			return nil, badParas("paths[%d]: %s is given twice", i, path)
		}
		seen[path] = true
		op.Paths = append(op.Paths, path)
	}
	return op, encodeComposite(op, ct)
}

// encodeComposite encodes op's request body now when the application
// named its format (ct >= 0), as writePayload does for WRITE.
func encodeComposite(op *Operation, ct int) error {
	if ct < 0 {
		return nil
	}
	op.ContentFormat = uint16(ct)
	var err error
	if op.Payload, err = op.compositeBody(op.ContentFormat); err != nil {
		return badParas("cannot encode the request as content format %d: %v", ct, err)
	}
	return nil
}

// compositeValues reads WRITE_COMPOSITE's values: resources or resource
// instances anywhere in the tree.
func compositeValues(op *Operation, p *lwm2mParas) error {
	if len(p.Paths) > 0 {
		return badParas("WRITE_COMPOSITE takes values, not paths")
	}
	if len(p.Values) == 0 || len(p.Values) > maxCompositePaths {
		return badParas("WRITE_COMPOSITE needs 1 to %d values", maxCompositePaths)
	}
	seen := make(map[format.Path]bool, len(p.Values))
	for i, v := range p.Values {
		rp, err := format.ParsePath(v.Path)
		if err != nil {
			return badParas("values[%d]: %v", i, err)
		}
		if rp.Depth() < 3 {
			return badParas("values[%d]: %s is not a resource", i, rp)
		}
		if seen[rp] {
			return badParas("values[%d]: %s is given twice", i, rp)
		}
		seen[rp] = true
		if len(v.Value) == 0 {
			return badParas("values[%d] (%s): value is required", i, rp)
		}
		val, err := valueOf(rp, v)
		if err != nil {
			return badParas("values[%d] (%s): %v", i, rp, err)
		}
		op.Records = append(op.Records, format.Record{Path: rp, Value: val})
	}
	return nil
}

// compositeFormats is the Content-Format of op's request body and the
// Accept of its answer for r's client: what the application asked for
// (the body then encoded already), else SenML CBOR or JSON as the client
// declared them (CBOR first, the smaller), else SenML CBOR for a 1.1
// client that declared nothing.
func (op *Operation) compositeFormats(r *Registration) (ct, accept uint16, err error) {
	switch {
	case op.Payload != nil:
		ct = op.ContentFormat
	case r.Formats.Has(format.FormatSenMLCBOR):
		ct = format.FormatSenMLCBOR
	case r.Formats.Has(format.FormatSenMLJSON):
		ct = format.FormatSenMLJSON
	case isLwM2M10(r.Version):
		return 0, 0, fmt.Errorf("%w; this one registered as LwM2M %s", errNoComposite, orDefault(r.Version, "1.0"))
	case r.Formats != 0:
		return 0, 0, fmt.Errorf("%w; this one declared ct=%q", errNoComposite, r.Formats.String())
	default:
		ct = format.FormatSenMLCBOR
	}
	accept = ct
	if op.Accept >= 0 {
		accept = uint16(op.Accept)
	}
	return ct, accept, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// compositeBody is the pack of op's request in ct: its paths' names, or
// WRITE_COMPOSITE's values.
func (op *Operation) compositeBody(ct uint16) ([]byte, error) {
	recs := op.Records
	if op.Name != OpWriteComposite {
		recs = make([]format.Record, len(op.Paths))
		for i, p := range op.Paths {
			recs[i] = format.Record{Path: p}
		}
	}
	return format.Encode(ct, format.NewPath(), recs)
}

// performComposite sends a composite operation to e.
func (s *Server) performComposite(ctx context.Context, e *entry, op *Operation) (*Response, error) {
	ct, accept, err := op.compositeFormats(e.reg.Load())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadOperation, err)
	}
	body := op.Payload
	if body == nil {
		if body, err = op.compositeBody(ct); err != nil {
			return nil, fmt.Errorf("%w: encoding the request as content format %d: %v", errBadOperation, ct, err)
		}
	}
	op.Accept = int(accept) // how resultOf reads an answer that names no format
	fetch := func(tok string, observe int) func(cc *udpClient.Conn) (*pool.Message, error) {
		return func(cc *udpClient.Conn) (*pool.Message, error) {
			req, err := cc.NewPostRequest(ctx, "/", message.MediaType(ct), bytes.NewReader(body))
			if err != nil {
				return nil, err
			}
			req.SetCode(codeFETCH)
			req.SetAccept(message.MediaType(accept))
			if tok != "" {
				req.SetToken(message.Token(tok))
			}
			if observe >= 0 {
				req.SetObserve(uint32(observe))
			}
			return req, nil
		}
	}
	switch op.Name {
	case OpReadComposite:
		return s.exchange(ctx, e, fetch("", -1))
	case OpObserveComposite:
		o := s.startCompositeObservation(e, op.Paths)
		if o == nil {
			return nil, ErrNotRegistered
		}
		resp, err := s.exchange(ctx, e, fetch(o.token, 0))
		if err != nil || resp.Code != codes.Content {
			s.endObservation(o)
		} else if resp.separateMID >= 0 {
			o.lastMID.Store(resp.separateMID)
		}
		return resp, err
	case OpCancelObserveComposite:
		o := s.compositeObservationOf(e, op.Paths)
		if o == nil {
			return nil, errNotObserved
		}
		s.endObservation(o)
		return s.exchange(ctx, e, fetch(o.token, 1))
	case OpWriteComposite:
		return s.exchange(ctx, e, func(cc *udpClient.Conn) (*pool.Message, error) {
			req, err := cc.NewPostRequest(ctx, "/", message.MediaType(ct), bytes.NewReader(body))
			if err != nil {
				return nil, err
			}
			req.SetCode(codeIPATCH)
			return req, nil
		})
	}
	return nil, fmt.Errorf("%w: %q", errBadOperation, op.Name)
}

// samePaths reports whether a and b hold the same paths, in any order.
func samePaths(a, b []format.Path) bool {
	if len(a) != len(b) {
		return false
	}
	for _, p := range a {
		found := false
		for _, q := range b {
			if p == q {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// startCompositeObservation is startObservation for a set of paths: it
// replaces an observation of the same set. Its path is the root, which no
// single-path observation has.
func (s *Server) startCompositeObservation(e *entry, paths []format.Path) *observation {
	o := newObservation(e, format.NewPath())
	o.paths = append([]format.Path(nil), paths...)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.removed.Load() {
		return nil
	}
	for t, old := range e.observations {
		if old.paths != nil && samePaths(old.paths, paths) {
			delete(e.observations, t)
			s.obs.remove(t)
		}
	}
	e.observations[o.token] = o
	s.obs.put(o)
	s.markDirty(e)
	return o
}

// compositeObservationOf returns e's observation of the set paths, if any.
func (s *Server) compositeObservationOf(e *entry, paths []format.Path) *observation {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, o := range e.observations {
		if o.paths != nil && samePaths(o.paths, paths) {
			return o
		}
	}
	return nil
}

// storeObserved keeps a notification of o: a composite one under the
// topic of its paths joined by commas ("/3/0/9,/4/0/2"), its pack's
// names being full paths.
func (s *Server) storeObserved(o *observation, ct int, body []byte) {
	if o.paths == nil {
		s.storeNotification(o.e, o.path, o.path.String(), ct, body)
		return
	}
	s.storeNotification(o.e, format.NewPath(), compositeTopic(o.paths), ct, body)
}

func compositeTopic(paths []format.Path) string {
	var b strings.Builder
	for i, p := range paths {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.String())
	}
	return b.String()
}
