// Package lwm2mclient is a small LwM2M client: it registers with an LwM2M
// server over CoAP (NoSec) or CoAP over DTLS with a pre-shared key,
// answers the server's Read, Write, Execute, Observe, Discover,
// Write-Attributes, Create, Delete and (LwM2M 1.1) Read-, Observe- and
// Write-Composite on an in-memory object tree, sends notifications when
// values change, Sends values on its own (POST /dp), and can sleep like a
// queue-mode NB-IoT device. iotgate's tests drive it; it is light enough (one
// goroutine, one socket per client) to simulate fleets in a load
// generator.
//
// It implements just enough CoAP for that: confirmable requests with
// retransmission, piggybacked and separate responses, deduplication of the
// server's retransmissions, and non-confirmable notifications.
package lwm2mclient

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/pion/dtls/v2"
	dtlsnet "github.com/pion/dtls/v2/pkg/net"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// Config describes one client.
type Config struct {
	// Server is the server's host:port (CoAP, or CoAP over DTLS when PSK
	// is set).
	Server   string
	Endpoint string
	// Lifetime is lt in seconds; 0 leaves it out (the server's default).
	Lifetime int
	// Binding is b: "U" (default) or "UQ" for queue mode.
	Binding string
	// Version is lwm2m; "" means "1.1".
	Version string
	// Objects is the Register payload's object list, e.g.
	// "</1/0>,</3/0>,</19/0>"; "" announces the objects the client holds.
	Objects string
	// Formats are the content formats the client declares at Register
	// with ct on its root link (</>;rt="oma.lwm2m";ct=110, LwM2M 1.1) and
	// the only ones it reads and writes besides text/plain and
	// application/octet-stream for single values: others get 4.06 Not
	// Acceptable, as Wakaama built with one format answers. nil declares
	// nothing and speaks every format package format handles.
	Formats []uint16
	// PSKIdentity and PSK switch to DTLS.
	PSKIdentity string
	PSK         []byte
	// ConnectionID makes the DTLS client send the Connection ID the server
	// offers (RFC 9146), so it survives a change of its source address.
	ConnectionID bool
	// RequestTimeout bounds one request; 0 means 10 s.
	RequestTimeout time.Duration
	// LocalAddr is the local UDP address to bind ("" picks one).
	LocalAddr string
	// MaxDatagram is the largest datagram (for DTLS, record) the client
	// reads; larger ones are dropped, as a constrained device drops them.
	// 0 means 64 KiB. A fleet of thousands sets it near the path MTU: the
	// read buffer is held for the client's lifetime.
	MaxDatagram int
	// ExtraQuery is appended to the Register query ("Q", "sms=...").
	ExtraQuery []string
	Logger     *slog.Logger
}

// request is what the client parsed of a server request beyond its code
// and path.
type request struct {
	ContentFormat int // -1 when absent
	Payload       []byte
	Queries       []string
	Observe       int // -1 when absent
}

// CodeError is a server response that was not the success expected.
type CodeError struct {
	Code       codes.Code
	Diagnostic string
}

func (e *CodeError) Error() string {
	return fmt.Sprintf("server answered %s: %s", e.Code, e.Diagnostic)
}

// maxOptions bounds the options of a message the client decodes.
const maxOptions = 64

// ErrTimeout is returned when the server does not answer a request.
var ErrTimeout = errors.New("lwm2mclient: no response")

// Client is one LwM2M client. Its methods are safe for concurrent use.
type Client struct {
	cfg  Config
	conn net.Conn
	udp  *net.UDPConn
	log  *slog.Logger

	mid      atomic.Uint32
	asleep   atomic.Bool
	closed   chan struct{}
	closeErr error
	once     sync.Once
	writeMu  sync.Mutex

	mu        sync.Mutex
	values    map[format.Path]format.Value // resource (or resource instance) values
	instances map[format.Path]bool         // object instances that exist
	attrs     map[format.Path][]string
	observers map[string]*observer // by path string
	pending   map[int32]*exchange  // by message id of our requests
	byToken   map[string]*exchange // our requests by token (separate responses)
	recent    map[int32][]byte     // responses to recent server requests, for dedup
	recentQ   []int32
	location  string
	accepts   map[string]int               // the Accept of the last Read or Observe, by path
	onWrite   func(format.Path)            // SetHooks
	onExecute func(format.Path) codes.Code // SetHooks
}

type observer struct {
	token []byte
	path  format.Path
	// paths are a composite observation's (Observe-Composite), nil for
	// an observation of path.
	paths  []format.Path
	accept int // the Observe's Accept, -1 if none: its notifications' format
	seq    uint32
}

type exchange struct {
	token []byte
	resp  chan message.Message
}

// Dial opens the client's socket (and DTLS session) and starts its read
// loop; it does not register.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Binding == "" {
		cfg.Binding = "U"
	}
	if cfg.Version == "" {
		cfg.Version = "1.1"
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	c := &Client{cfg: cfg, log: cfg.Logger, closed: make(chan struct{}),
		values: make(map[format.Path]format.Value), instances: make(map[format.Path]bool),
		attrs: make(map[format.Path][]string), observers: make(map[string]*observer),
		pending: make(map[int32]*exchange), byToken: make(map[string]*exchange), recent: make(map[int32][]byte),
		accepts: make(map[string]int)}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	var mid [2]byte
	_, _ = rand.Read(mid[:])
	c.mid.Store(uint32(mid[0])<<8 | uint32(mid[1]))
	c.setDefaults()
	raddr, err := net.ResolveUDPAddr("udp", cfg.Server)
	if err != nil {
		return nil, err
	}
	var laddr *net.UDPAddr
	if cfg.LocalAddr != "" {
		if laddr, err = net.ResolveUDPAddr("udp", cfg.LocalAddr); err != nil {
			return nil, err
		}
	}
	udp, err := net.DialUDP("udp", laddr, raddr)
	if err != nil {
		return nil, err
	}
	c.conn, c.udp = udp, udp
	if cfg.PSK != nil {
		dc := &dtls.Config{
			PSK:                  func([]byte) ([]byte, error) { return cfg.PSK, nil },
			PSKIdentityHint:      []byte(cfg.PSKIdentity),
			CipherSuites:         []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8},
			ExtendedMasterSecret: dtls.RequestExtendedMasterSecret,
		}
		if cfg.ConnectionID {
			dc.ConnectionIDGenerator = dtls.OnlySendCIDGenerator()
		}
		hctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
		conn, err := dtls.ClientWithContext(hctx, dtlsnet.PacketConnFromConn(udp), raddr, dc)
		cancel()
		if err != nil {
			_ = udp.Close()
			return nil, fmt.Errorf("dtls handshake: %w", err)
		}
		c.conn = conn
	}
	go c.readLoop()
	return c, nil
}

// setDefaults fills the objects every client has: Server (1), Device (3)
// and BinaryAppDataContainer (19) instances 0 and 1.
func (c *Client) setDefaults() {
	set := func(v format.Value, ids ...uint16) {
		p := format.NewPath(ids...)
		c.values[p] = v
		c.instances[format.NewPath(ids[0], ids[1])] = true
	}
	set(format.IntegerValue(1), 1, 0, 0)
	set(format.IntegerValue(int64(c.cfg.Lifetime)), 1, 0, 1)
	set(format.StringValue(c.cfg.Binding), 1, 0, 7)
	set(format.StringValue("iotgate"), 3, 0, 0)
	set(format.StringValue("lwm2mclient"), 3, 0, 1)
	set(format.StringValue(c.cfg.Endpoint), 3, 0, 2)
	set(format.StringValue("1.0"), 3, 0, 3)
	set(format.IntegerValue(100), 3, 0, 9)
	set(format.OpaqueValue(nil), 19, 0, 0)
	set(format.OpaqueValue(nil), 19, 1, 0)
}

// LocalAddr is the client's UDP address.
func (c *Client) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// Location is the registration's Location-Path ("/rd/xyz"), "" before
// Register.
func (c *Client) Location() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.location
}

// Close ends the client without deregistering.
func (c *Client) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.closeErr = c.conn.Close()
	})
	return c.closeErr
}

// Drop ends the client the way a power cut does: the socket closes and the
// server is told nothing (no DTLS close_notify, no De-register).
func (c *Client) Drop() {
	c.once.Do(func() {
		close(c.closed)
		c.closeErr = c.udp.Close()
	})
}

// Sleep makes the client deaf, like a device in power saving mode: the
// server's datagrams are dropped until Wake.
func (c *Client) Sleep() { c.asleep.Store(true) }

// Wake ends Sleep. It sends nothing: call Update (or Notify) to let a
// queue-mode server know.
func (c *Client) Wake() { c.asleep.Store(false) }

// Register sends Register and keeps the Location-Path.
func (c *Client) Register(ctx context.Context) error {
	q := []string{"ep=" + c.cfg.Endpoint, "lwm2m=" + c.cfg.Version, "b=" + c.cfg.Binding}
	if c.cfg.Lifetime > 0 {
		q = append(q, "lt="+strconv.Itoa(c.cfg.Lifetime))
	}
	q = append(q, c.cfg.ExtraQuery...)
	objects := c.cfg.Objects
	if objects == "" {
		objects = c.objectLinks()
	}
	resp, err := c.Do(ctx, codes.POST, "/rd", q, message.AppLinkFormat, []byte(objects))
	if err != nil {
		return err
	}
	if resp.Code != codes.Created {
		return &CodeError{Code: resp.Code, Diagnostic: string(resp.Payload)}
	}
	loc, err := resp.Options.LocationPath()
	if err != nil {
		return fmt.Errorf("register: no Location-Path: %w", err)
	}
	c.mu.Lock()
	c.location = loc
	c.mu.Unlock()
	return nil
}

// Update sends a registration Update with the given query parameters.
func (c *Client) Update(ctx context.Context, query ...string) error {
	loc := c.Location()
	if loc == "" {
		return errors.New("lwm2mclient: not registered")
	}
	resp, err := c.Do(ctx, codes.POST, loc, query, 0, nil)
	if err != nil {
		return err
	}
	if resp.Code != codes.Changed {
		return &CodeError{Code: resp.Code, Diagnostic: string(resp.Payload)}
	}
	return nil
}

// Deregister sends De-register.
func (c *Client) Deregister(ctx context.Context) error {
	loc := c.Location()
	if loc == "" {
		return errors.New("lwm2mclient: not registered")
	}
	resp, err := c.Do(ctx, codes.DELETE, loc, nil, 0, nil)
	if err != nil {
		return err
	}
	if resp.Code != codes.Deleted {
		return &CodeError{Code: resp.Code, Diagnostic: string(resp.Payload)}
	}
	return nil
}

func (c *Client) objectLinks() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var links []string
	for p := range c.instances {
		links = append(links, "<"+p.String()+">")
	}
	sort.Strings(links)
	if len(c.cfg.Formats) > 0 {
		cts := make([]string, len(c.cfg.Formats))
		for i, f := range c.cfg.Formats {
			cts[i] = strconv.Itoa(int(f))
		}
		ct := strings.Join(cts, " ")
		if len(cts) > 1 {
			ct = `"` + ct + `"`
		}
		links = append([]string{`</>;rt="oma.lwm2m";ct=` + ct}, links...)
	}
	return strings.Join(links, ",")
}

// Set changes a resource value and notifies the server if it observes the
// resource or one of its parents.
func (c *Client) Set(path string, v format.Value) error {
	p, err := format.ParsePath(path)
	if err != nil {
		return err
	}
	if p.Depth() < 3 {
		return fmt.Errorf("lwm2mclient: %s is not a resource", path)
	}
	c.mu.Lock()
	c.values[p] = v
	c.instances[format.NewPath(uint16(p.Object), uint16(p.Instance))] = true
	var due []*observer
	for _, o := range c.observers {
		if o.covers(p) {
			due = append(due, o)
		}
	}
	c.mu.Unlock()
	for _, o := range due {
		c.notify(o)
	}
	return nil
}

// Value returns a resource value.
func (c *Client) Value(path string) (format.Value, bool) {
	p, err := format.ParsePath(path)
	if err != nil {
		return format.Value{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.values[p]
	return v, ok
}

// SendData sets /19/0/0 (the NB-IoT uplink) to b, which notifies the
// server's observation of it.
func (c *Client) SendData(b []byte) error { return c.Set("/19/0/0", format.OpaqueValue(b)) }

// Accept returns the Accept option of the server's last Read or Observe
// of path (-1: it had none), and whether there was one.
func (c *Client) Accept(path string) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.accepts[path]
	return a, ok
}

// Resume carries prev's LwM2M state over to c, a new client of the same
// device (its DTLS session ended and c made a new one): the
// registration's location and the server's observations, which a device
// keeps across a new handshake. c then updates that registration and
// notifies on those observations.
func (c *Client) Resume(prev *Client) {
	prev.mu.Lock()
	loc := prev.location
	obs := make(map[string]*observer, len(prev.observers))
	for k, o := range prev.observers {
		cp := *o
		obs[k] = &cp
	}
	prev.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.location = loc
	for k, o := range obs {
		c.observers[k] = o
	}
}

// Observed reports whether the server observes path.
func (c *Client) Observed(path string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.observers[path]
	return ok
}

func (c *Client) notify(o *observer) {
	c.mu.Lock()
	o.seq++
	seq := o.seq
	var (
		ct   message.MediaType
		body []byte
		code codes.Code
	)
	if o.paths != nil {
		ct, body, code = c.readCompositeLocked(o.paths, o.accept)
	} else {
		ct, body, code = c.readLocked(o.path, o.accept)
	}
	c.mu.Unlock()
	if code != codes.Content {
		return
	}
	m := message.Message{Token: o.token, Code: codes.Content, Type: message.NonConfirmable, MessageID: c.nextMID(), Payload: body}
	m.Options = AddUint(m.Options, message.Observe, seq)
	m.Options = AddUint(m.Options, message.ContentFormat, uint32(ct))
	_ = c.write(m)
}

func (c *Client) nextMID() int32 { return int32(uint16(c.mid.Add(1))) }

// AddUint adds option id with the value v, minimally encoded.
func AddUint(opts message.Options, id message.OptionID, v uint32) message.Options {
	buf := make([]byte, 4)
	n, _ := message.EncodeUint32(buf, v)
	return opts.Add(message.Option{ID: id, Value: buf[:n]})
}

// EncodeMessage encodes m as a CoAP-over-UDP datagram.
func EncodeMessage(m message.Message) ([]byte, error) {
	size, err := coder.DefaultCoder.Size(m)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	if _, err := coder.DefaultCoder.Encode(m, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func (c *Client) write(m message.Message) error {
	buf, err := EncodeMessage(m)
	if err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_, err = c.conn.Write(buf)
	return err
}

// Do sends a confirmable request and waits for its response, resending
// it as CoAP does until ctx or the request timeout ends.
func (c *Client) Do(ctx context.Context, code codes.Code, path string, query []string, ct message.MediaType, payload []byte) (message.Message, error) {
	tok := make([]byte, 8)
	_, _ = rand.Read(tok)
	m := message.Message{Token: tok, Code: code, Type: message.Confirmable, MessageID: c.nextMID(), Payload: payload}
	for _, seg := range strings.Split(strings.Trim(path, "/"), "/") {
		if seg != "" {
			m.Options = m.Options.Add(message.Option{ID: message.URIPath, Value: []byte(seg)})
		}
	}
	if payload != nil {
		m.Options = AddUint(m.Options, message.ContentFormat, uint32(ct))
	}
	for _, q := range query {
		m.Options = m.Options.Add(message.Option{ID: message.URIQuery, Value: []byte(q)})
	}
	return c.roundTrip(ctx, m)
}

// roundTrip sends the confirmable request m and waits for its response.
func (c *Client) roundTrip(ctx context.Context, m message.Message) (message.Message, error) {
	code, tok := m.Code, m.Token
	path, _ := m.Options.Path()
	x := &exchange{token: tok, resp: make(chan message.Message, 1)}
	c.mu.Lock()
	c.pending[m.MessageID] = x
	c.byToken[string(tok)] = x
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, m.MessageID)
		delete(c.byToken, string(tok))
		c.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	wait := time.Second
	for {
		if err := c.write(m); err != nil {
			return message.Message{}, err
		}
		t := time.NewTimer(wait)
		select {
		case r := <-x.resp:
			t.Stop()
			return r, nil
		case <-ctx.Done():
			t.Stop()
			return message.Message{}, fmt.Errorf("%w to %s %s", ErrTimeout, code, path)
		case <-c.closed:
			t.Stop()
			return message.Message{}, net.ErrClosed
		case <-t.C:
			wait *= 2
		}
	}
}

func (c *Client) readLoop() {
	size := c.cfg.MaxDatagram
	if size <= 0 {
		size = 64 << 10
	}
	buf := make([]byte, size+1) // a datagram that fills it was truncated
	// Decoded options point into buf; receive gets copies, so one
	// options slice serves every datagram.
	decoded := make(message.Options, 0, maxOptions)
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			select {
			case <-c.closed:
				return
			default:
			}
			// io.EOF: the DTLS session ended (the server's close_notify);
			// every later Read says so again at once.
			if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
				return
			}
			continue // a DTLS alert or a refused datagram: keep reading
		}
		if c.asleep.Load() {
			continue
		}
		if n > size {
			c.log.Debug("lwm2mclient: datagram larger than MaxDatagram dropped", "max", size)
			continue
		}
		m := message.Message{Options: decoded[:0]}
		if _, err := coder.DefaultCoder.Decode(buf[:n], &m); err != nil {
			c.log.Debug("lwm2mclient: undecodable datagram", "err", err)
			continue
		}
		m.Payload = append([]byte(nil), m.Payload...)
		opts := make(message.Options, len(m.Options))
		for i, o := range m.Options {
			opts[i] = message.Option{ID: o.ID, Value: append([]byte(nil), o.Value...)}
		}
		m.Options = opts
		m.Token = append([]byte(nil), m.Token...)
		c.receive(m)
	}
}

func (c *Client) receive(m message.Message) {
	switch {
	case m.Type == message.Acknowledgement || m.Type == message.Reset:
		c.mu.Lock()
		x := c.pending[m.MessageID]
		c.mu.Unlock()
		if x == nil {
			return
		}
		if m.Type == message.Reset {
			x.deliver(message.Message{Code: codes.ServiceUnavailable, Payload: []byte("reset")})
			return
		}
		if m.Code != codes.Empty {
			x.deliver(m)
		}
		// An empty ACK: the response comes separately, by token.
	case m.Code >= codes.GET && m.Code < 32:
		c.serve(m)
	case m.Code >= codes.Created:
		c.mu.Lock()
		x := c.byToken[string(m.Token)]
		c.mu.Unlock()
		if m.Type == message.Confirmable {
			_ = c.write(message.Message{Type: message.Acknowledgement, MessageID: m.MessageID, Code: codes.Empty})
		}
		if x != nil {
			x.deliver(m)
		}
	case m.Code == codes.Empty && m.Type == message.Confirmable:
		// CoAP ping.
		_ = c.write(message.Message{Type: message.Reset, MessageID: m.MessageID, Code: codes.Empty})
	}
}

func (x *exchange) deliver(m message.Message) {
	select {
	case x.resp <- m:
	default:
	}
}

// Send pushes the current values under paths to the server (LwM2M 1.1
// Send: POST /dp) as a pack in ct, SenML JSON or CBOR.
func (c *Client) Send(ctx context.Context, ct uint16, paths ...string) error {
	var recs []format.Record
	c.mu.Lock()
	for _, s := range paths {
		p, err := format.ParsePath(s)
		if err != nil {
			c.mu.Unlock()
			return err
		}
		for k, v := range c.values {
			if p.Contains(k) {
				recs = append(recs, format.Record{Path: k, Value: v})
			}
		}
	}
	c.mu.Unlock()
	sort.Slice(recs, func(i, j int) bool { return recs[i].Path.String() < recs[j].Path.String() })
	return c.SendRecords(ctx, ct, recs)
}

// SendRecords pushes recs (with their times, if any) to the server's /dp
// as a pack in ct.
func (c *Client) SendRecords(ctx context.Context, ct uint16, recs []format.Record) error {
	body, err := format.Encode(ct, format.NewPath(), recs)
	if err != nil {
		return err
	}
	resp, err := c.Do(ctx, codes.POST, "/dp", nil, message.MediaType(ct), body)
	if err != nil {
		return err
	}
	if resp.Code != codes.Changed {
		return &CodeError{Code: resp.Code, Diagnostic: string(resp.Payload)}
	}
	return nil
}
