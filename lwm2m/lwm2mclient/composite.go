package lwm2mclient

import (
	"sort"
	"strings"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// The composite operations of LwM2M 1.1: Read-Composite and
// Observe-Composite (FETCH / with a SenML pack of names) and
// Write-Composite (iPATCH / with a SenML pack of values).

// CoAP's FETCH and iPATCH (RFC 8132).
const (
	codeFETCH  codes.Code = 5
	codeIPATCH codes.Code = 7
)

func isSenML(ct int) bool {
	return ct == int(format.FormatSenMLJSON) || ct == int(format.FormatSenMLCBOR)
}

// covers reports whether a change of p concerns o.
func (o *observer) covers(p format.Path) bool {
	if o.paths == nil {
		return o.path.Contains(p)
	}
	for _, q := range o.paths {
		if q.Contains(p) {
			return true
		}
	}
	return false
}

// compositeKey names a composite observation among the observers: its
// paths, sorted.
func compositeKey(paths []format.Path) string {
	s := make([]string, len(paths))
	for i, p := range paths {
		s[i] = p.String()
	}
	sort.Strings(s)
	return "composite " + strings.Join(s, ",")
}

// ObservedComposite reports whether the server observes the set paths
// with Observe-Composite.
func (c *Client) ObservedComposite(paths ...string) bool {
	ps := make([]format.Path, 0, len(paths))
	for _, s := range paths {
		p, err := format.ParsePath(s)
		if err != nil {
			return false
		}
		ps = append(ps, p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.observers[compositeKey(ps)]
	return ok
}

// requestPack decodes the SenML pack of a composite request, or returns
// the code to answer.
func (c *Client) requestPack(req *request) ([]format.Record, codes.Code) {
	if !isSenML(req.ContentFormat) || !c.speaks(req.ContentFormat, false) {
		return nil, codes.UnsupportedMediaType
	}
	recs, err := format.Decode(uint16(req.ContentFormat), format.NewPath(), req.Payload, format.DefaultModel())
	if err != nil || len(recs) == 0 {
		return nil, codes.BadRequest
	}
	return recs, 0
}

// fetch answers Read-Composite and Observe-Composite.
func (c *Client) fetch(m message.Message, req *request, resp *message.Message) {
	recs, code := c.requestPack(req)
	if code != 0 {
		resp.Code = code
		return
	}
	paths := make([]format.Path, len(recs))
	for i, r := range recs {
		paths[i] = r.Path
	}
	accept := req.ContentFormat
	if a, err := m.Options.Accept(); err == nil {
		accept = int(a)
	}
	if !isSenML(accept) || !c.speaks(accept, false) {
		resp.Code = codes.NotAcceptable
		return
	}
	c.mu.Lock()
	ct, body, code := c.readCompositeLocked(paths, accept)
	key := compositeKey(paths)
	switch {
	case code == codes.Content && req.Observe == 0:
		c.observers[key] = &observer{token: m.Token, paths: paths, accept: accept}
		resp.Options = AddUint(resp.Options, message.Observe, 0)
	case req.Observe == 1:
		delete(c.observers, key)
	}
	c.mu.Unlock()
	resp.Code, resp.Payload = code, body
	if code == codes.Content {
		resp.Options = AddUint(resp.Options, message.ContentFormat, uint32(ct))
	}
}

// readCompositeLocked renders the values under paths in accept; paths
// the client does not have are left out, 4.04 if it has none of them.
func (c *Client) readCompositeLocked(paths []format.Path, accept int) (message.MediaType, []byte, codes.Code) {
	var recs []format.Record
	seen := map[format.Path]bool{}
	for _, p := range paths {
		for k, v := range c.values {
			if p.Contains(k) && !seen[k] {
				seen[k] = true
				recs = append(recs, format.Record{Path: k, Value: v})
			}
		}
	}
	if len(recs) == 0 {
		return 0, []byte("none of the paths exists"), codes.NotFound
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Path.String() < recs[j].Path.String() })
	body, err := format.Encode(uint16(accept), format.NewPath(), recs)
	if err != nil {
		return 0, []byte(err.Error()), codes.NotAcceptable
	}
	return message.MediaType(accept), body, codes.Content
}

// patch answers Write-Composite: every value is written, or none (4.04
// if one names an instance the client does not have).
func (c *Client) patch(req *request) codes.Code {
	recs, code := c.requestPack(req)
	if code != 0 {
		return code
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range recs {
		if r.Path.Depth() < 3 || r.Value.Kind() == format.KindNone {
			return codes.BadRequest
		}
		if !c.instances[format.NewPath(uint16(r.Path.Object), uint16(r.Path.Instance))] {
			return codes.NotFound
		}
	}
	for _, r := range recs {
		c.values[r.Path] = r.Value
	}
	return codes.Changed
}
