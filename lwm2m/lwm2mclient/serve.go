package lwm2mclient

import (
	"sort"
	"strings"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// recentKept is how many responses are kept to answer retransmissions.
const recentKept = 64

// serve answers one server request.
func (c *Client) serve(m message.Message) {
	c.mu.Lock()
	if raw, ok := c.recent[m.MessageID]; ok && m.Type == message.Confirmable {
		c.mu.Unlock()
		c.writeMu.Lock()
		_, _ = c.conn.Write(raw) // a retransmission: same answer
		c.writeMu.Unlock()
		return
	}
	c.mu.Unlock()

	path, _ := m.Options.Path()
	path = "/" + strings.Trim(path, "/")
	req := request{ContentFormat: -1, Payload: m.Payload, Observe: -1}
	if ct, err := m.Options.ContentFormat(); err == nil {
		req.ContentFormat = int(ct)
	}
	if obs, err := m.Options.Observe(); err == nil {
		req.Observe = int(obs)
	}
	req.Queries, _ = m.Options.Queries()

	resp := message.Message{Token: m.Token, Type: message.NonConfirmable, MessageID: c.nextMID()}
	if m.Type == message.Confirmable {
		resp.Type, resp.MessageID = message.Acknowledgement, m.MessageID
	}
	p, err := format.ParsePath(path)
	if err != nil {
		resp.Code, resp.Payload = codes.NotFound, []byte(err.Error())
	} else {
		c.handle(m, &req, p, &resp)
	}

	if size, err := coder.DefaultCoder.Size(resp); err == nil {
		raw := make([]byte, size)
		if _, err := coder.DefaultCoder.Encode(resp, raw); err == nil {
			c.mu.Lock()
			c.recent[m.MessageID] = raw
			c.recentQ = append(c.recentQ, m.MessageID)
			if len(c.recentQ) > recentKept {
				delete(c.recent, c.recentQ[0])
				c.recentQ = c.recentQ[1:]
			}
			c.mu.Unlock()
			c.writeMu.Lock()
			_, _ = c.conn.Write(raw)
			c.writeMu.Unlock()
		}
	}
}

// handle performs the LwM2M operation the request carries.
func (c *Client) handle(m message.Message, req *request, p format.Path, resp *message.Message) {
	switch m.Code {
	case codes.GET:
		accept := -1
		if a, err := m.Options.Accept(); err == nil {
			accept = int(a)
		}
		if accept == int(message.AppLinkFormat) {
			c.discover(p, resp)
			return
		}
		c.mu.Lock()
		c.accepts[p.String()] = accept
		ct, body, code := c.readLocked(p, accept)
		if code == codes.Content && req.Observe == 0 {
			o := &observer{token: m.Token, path: p, accept: accept}
			c.observers[p.String()] = o
			resp.Options = AddUint(resp.Options, message.Observe, 0)
		}
		if req.Observe == 1 {
			delete(c.observers, p.String())
		}
		c.mu.Unlock()
		resp.Code, resp.Payload = code, body
		if code == codes.Content {
			resp.Options = AddUint(resp.Options, message.ContentFormat, uint32(ct))
		}
	case codes.PUT:
		if len(m.Payload) == 0 && len(req.Queries) > 0 {
			c.mu.Lock()
			c.attrs[p] = req.Queries
			c.mu.Unlock()
			resp.Code = codes.Changed
			return
		}
		if resp.Code = c.writeValues(p, req, true); resp.Code == codes.Changed {
			c.wrote(p)
		}
	case codes.POST:
		switch p.Depth() {
		case 3:
			c.mu.Lock()
			_, ok := c.values[p]
			exec := c.onExecute
			c.mu.Unlock()
			resp.Code = codes.Changed // Execute
			switch {
			case !ok:
				resp.Code = codes.NotFound
			case exec != nil:
				resp.Code = exec(p)
			}
		case 2:
			if resp.Code = c.writeValues(p, req, false); resp.Code == codes.Changed {
				c.wrote(p)
			}
		case 1:
			c.create(p, req, resp)
		default:
			resp.Code = codes.MethodNotAllowed
		}
	case codeFETCH:
		c.fetch(m, req, resp)
	case codeIPATCH:
		resp.Code = c.patch(req)
	case codes.DELETE:
		c.mu.Lock()
		if p.Depth() != 2 || !c.instances[p] {
			c.mu.Unlock()
			resp.Code = codes.NotFound
			return
		}
		delete(c.instances, p)
		for k := range c.values {
			if p.Contains(k) {
				delete(c.values, k)
			}
		}
		c.mu.Unlock()
		resp.Code = codes.Deleted
	default:
		resp.Code = codes.MethodNotAllowed
	}
}

// speaks reports whether the client reads and writes ct: any format when
// it declared none, else the declared ones, and text/plain and
// application/octet-stream for one value.
func (c *Client) speaks(ct int, single bool) bool {
	if len(c.cfg.Formats) == 0 {
		return true
	}
	if single && (ct == int(format.FormatText) || ct == int(format.FormatOpaque)) {
		return true
	}
	for _, f := range c.cfg.Formats {
		if int(f) == ct {
			return true
		}
	}
	return false
}

// readLocked renders the values under p: a resource as text/plain (opaque
// as application/octet-stream) unless accept asks for another format,
// anything larger as the first declared format, TLV if none.
func (c *Client) readLocked(p format.Path, accept int) (message.MediaType, []byte, codes.Code) {
	var recs []format.Record
	for k, v := range c.values {
		if p.Contains(k) {
			recs = append(recs, format.Record{Path: k, Value: v})
		}
	}
	if len(recs) == 0 {
		return 0, nil, codes.NotFound
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Path.String() < recs[j].Path.String() })
	single := p.Depth() >= 3 && len(recs) == 1 && recs[0].Path == p
	ct := format.FormatTLV
	if len(c.cfg.Formats) > 0 {
		ct = c.cfg.Formats[0]
	}
	if single {
		ct = format.FormatText
		if recs[0].Value.Kind() == format.KindOpaque {
			ct = format.FormatOpaque
		}
	}
	if accept >= 0 {
		if !c.speaks(accept, single) {
			return 0, []byte("content format not supported"), codes.NotAcceptable
		}
		ct = uint16(accept)
	}
	body, err := format.Encode(ct, p, recs)
	if err != nil {
		return 0, []byte(err.Error()), codes.NotAcceptable
	}
	return message.MediaType(ct), body, codes.Content
}

// writeValues stores the values of a Write (replace) or partial update.
func (c *Client) writeValues(p format.Path, req *request, replace bool) codes.Code {
	if req.ContentFormat < 0 {
		return codes.BadRequest
	}
	if !c.speaks(req.ContentFormat, p.Depth() >= 3) {
		return codes.NotAcceptable
	}
	recs, err := format.Decode(uint16(req.ContentFormat), p, req.Payload, format.DefaultModel())
	if err != nil {
		return codes.BadRequest
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.Depth() >= 2 && !c.instances[format.NewPath(uint16(p.Object), uint16(p.Instance))] {
		return codes.NotFound
	}
	if replace && p.Depth() == 2 {
		for k := range c.values {
			if p.Contains(k) {
				delete(c.values, k)
			}
		}
	}
	for _, r := range recs {
		if r.Value.Kind() != format.KindNone {
			c.values[r.Path] = r.Value
		}
	}
	return codes.Changed
}

// create makes a new object instance from a TLV (or other) payload.
func (c *Client) create(p format.Path, req *request, resp *message.Message) {
	if req.ContentFormat < 0 {
		resp.Code = codes.BadRequest
		return
	}
	if !c.speaks(req.ContentFormat, false) {
		resp.Code = codes.NotAcceptable
		return
	}
	recs, err := format.Decode(uint16(req.ContentFormat), p, req.Payload, format.DefaultModel())
	if err != nil || len(recs) == 0 {
		resp.Code = codes.BadRequest
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	inst := recs[0].Path.Instance
	if inst < 0 {
		for inst = 0; c.instances[format.NewPath(uint16(p.Object), uint16(inst))]; inst++ {
		}
	}
	ip := format.NewPath(uint16(p.Object), uint16(inst))
	if c.instances[ip] {
		resp.Code = codes.BadRequest
		return
	}
	c.instances[ip] = true
	for _, r := range recs {
		rp := r.Path
		if rp.Instance < 0 {
			continue
		}
		c.values[rp] = r.Value
	}
	resp.Code = codes.Created
	resp.Options = resp.Options.Add(message.Option{ID: message.LocationPath, Value: []byte(p.String()[1:])})
	resp.Options = resp.Options.Add(message.Option{ID: message.LocationPath, Value: []byte(ip.String()[len(p.String())+1:])})
}

// discover answers a Discover with the resources under p and their
// attributes.
func (c *Client) discover(p format.Path, resp *message.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var links []format.Link
	seen := map[format.Path]bool{}
	for k := range c.values {
		if !p.Contains(k) {
			continue
		}
		rp := format.NewPath(uint16(k.Object), uint16(k.Instance), uint16(k.Resource))
		if seen[rp] {
			continue
		}
		seen[rp] = true
		l := format.Link{Target: rp.String(), Params: map[string]string{}}
		for _, a := range c.attrs[rp] {
			name, val, _ := strings.Cut(a, "=")
			l.Params[name] = val
		}
		links = append(links, l)
	}
	if len(links) == 0 {
		resp.Code = codes.NotFound
		return
	}
	sort.Slice(links, func(i, j int) bool { return links[i].Target < links[j].Target })
	resp.Code, resp.Payload = codes.Content, format.FormatLinks(links)
	resp.Options = AddUint(resp.Options, message.ContentFormat, uint32(message.AppLinkFormat))
}
