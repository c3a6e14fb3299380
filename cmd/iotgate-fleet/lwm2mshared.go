package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
	"golang.org/x/net/ipv4"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
)

// sharedDriver simulates NoSec LwM2M devices over a few shared sockets
// instead of a client and a socket each (-shared-sockets), so that one
// machine can hold a million registrations: the per-device client costs
// about 15 KiB, this about a hundred bytes.
//
// Every device still has an address of its own, as the server sees it:
// sockets are bound to the wildcard address, one per group of spread
// devices, and device j of group g sends from sourceIP(j) and the group's
// port, chosen per datagram with IP_PKTINFO; the server's answers come
// back to the group's socket, whose IP_PKTINFO names the device by the
// destination address. A device answers the server the way
// lwm2mclient's default objects do (Observe and Read of a resource,
// Write and Execute answered 2.04) with no state beyond its registration
// and observation.
type sharedDriver struct {
	spec      workerSpec
	ids       identities
	server    *net.UDPAddr
	spread    int
	groups    []*ipv4.PacketConn
	devs      []sharedDevice // by device index - Lo
	onCommand func(string)

	mu      sync.Mutex
	pending map[uint64]chan sharedResp // our requests by token
	mid     atomic.Uint32
	done    chan struct{}
	wg      sync.WaitGroup
}

// sharedResp is the part of a response a request waits for.
type sharedResp struct {
	code     codes.Code
	location string // Location-Path
}

// sharedDevice is one simulated device's state.
type sharedDevice struct {
	mu       sync.Mutex
	location string // registration's Location-Path, "" when not registered
	observe  uint64 // token of the server's Observe of /19/0/0, 0: none
	seq      uint32 // last notification's Observe number
}

func newSharedDriver(spec workerSpec, onCommand func(string)) (*sharedDriver, error) {
	if spec.Protocol != protoCoAP {
		return nil, fmt.Errorf("-shared-sockets simulates NoSec LwM2M only, not %s", spec.Protocol)
	}
	server, err := net.ResolveUDPAddr("udp4", spec.Target)
	if err != nil {
		return nil, fmt.Errorf("-coap %q: %w", spec.Target, err)
	}
	if !server.IP.IsLoopback() {
		return nil, fmt.Errorf("-shared-sockets needs a loopback IPv4 target (its devices send from 127.x.y.z), not %s", spec.Target)
	}
	spread := spec.Spread
	if spread <= 0 {
		return nil, errors.New("-shared-sockets needs -spread > 0 (devices per socket, each with its own source address)")
	}
	n := spec.Hi - spec.Lo
	d := &sharedDriver{spec: spec, ids: identities{prefix: spec.Prefix, seed: spec.Seed}, server: server, spread: spread,
		devs: make([]sharedDevice, n), onCommand: onCommand, pending: make(map[uint64]chan sharedResp), done: make(chan struct{})}
	var mid [2]byte
	_, _ = rand.Read(mid[:])
	d.mid.Store(uint32(binary.BigEndian.Uint16(mid[:])))
	for range (n + spread - 1) / spread {
		c, err := net.ListenPacket("udp4", "0.0.0.0:0")
		if err != nil {
			d.close()
			return nil, fmt.Errorf("shared socket: %w", err)
		}
		p := ipv4.NewPacketConn(c)
		if err := p.SetControlMessage(ipv4.FlagDst, true); err != nil {
			_ = c.Close()
			d.close()
			return nil, fmt.Errorf("shared socket: IP_PKTINFO: %w", err)
		}
		d.groups = append(d.groups, p)
	}
	for g, p := range d.groups {
		d.wg.Add(1)
		go d.readLoop(g, p)
	}
	return d, nil
}

// addrIndex inverts sourceIP: the index among spread of a 127.x.y.z
// address, or -1.
func addrIndex(ip netip.Addr, spread int) int {
	if !ip.Is4() {
		return -1
	}
	b := ip.As4()
	if b[0] != 127 || b[1] < 1 || b[3] < 1 || b[3] > 254 {
		return -1
	}
	n := ((int(b[1])-1)*256+int(b[2]))*254 + int(b[3]) - 1
	if n >= spread {
		return -1
	}
	return n
}

func (d *sharedDriver) nextMID() int32 { return int32(uint16(d.mid.Add(1))) }

// send writes m from device j's address.
func (d *sharedDriver) send(j int, m message.Message) error {
	buf, err := lwm2mclient.EncodeMessage(m)
	if err != nil {
		return err
	}
	cm := &ipv4.ControlMessage{Src: sourceIP(j%d.spread, d.spread)}
	_, err = d.groups[j/d.spread].WriteTo(buf, cm, d.server)
	return err
}

func (d *sharedDriver) readLoop(g int, p *ipv4.PacketConn) {
	defer d.wg.Done()
	buf := make([]byte, maxDatagram+1)
	// Decoding fills options it is given room for; they point into buf.
	opts := make(message.Options, 0, 32)
	for {
		n, cm, _, err := p.ReadFrom(buf)
		if err != nil {
			select {
			case <-d.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n > maxDatagram || cm == nil {
			continue
		}
		dst, ok := netip.AddrFromSlice(cm.Dst)
		if !ok {
			continue
		}
		a := addrIndex(dst.Unmap(), d.spread)
		j := g*d.spread + a
		if a < 0 || j >= len(d.devs) {
			continue
		}
		m := message.Message{Options: opts[:0]}
		if _, err := coder.DefaultCoder.Decode(buf[:n], &m); err != nil {
			continue
		}
		d.receive(j, m)
	}
}

func tokenKey(t []byte) uint64 {
	var k [8]byte
	copy(k[:], t)
	return binary.BigEndian.Uint64(k[:])
}

// receive handles a datagram from the server to device j. Decoded
// options and payload point into the read buffer: what outlives the call
// is copied.
func (d *sharedDriver) receive(j int, m message.Message) {
	switch {
	case m.Type == message.Acknowledgement || m.Type == message.Reset:
		if m.Code == codes.Empty && m.Type == message.Acknowledgement {
			return // an empty ACK: the response comes separately, by token
		}
		d.deliver(m)
	case m.Code >= codes.GET && m.Code < 32:
		d.serve(j, m)
	case m.Code >= codes.Created:
		if m.Type == message.Confirmable {
			_ = d.send(j, message.Message{Type: message.Acknowledgement, MessageID: m.MessageID, Code: codes.Empty})
		}
		d.deliver(m)
	case m.Code == codes.Empty && m.Type == message.Confirmable: // CoAP ping
		_ = d.send(j, message.Message{Type: message.Reset, MessageID: m.MessageID, Code: codes.Empty})
	}
}

// deliver hands a response to the request waiting for its token.
func (d *sharedDriver) deliver(m message.Message) {
	d.mu.Lock()
	ch := d.pending[tokenKey(m.Token)]
	d.mu.Unlock()
	if ch == nil {
		return
	}
	r := sharedResp{code: m.Code}
	if m.Type == message.Reset {
		r.code = codes.ServiceUnavailable
	}
	if loc, err := m.Options.LocationPath(); err == nil {
		r.location = loc
	}
	select {
	case ch <- r:
	default:
	}
}

// sharedValue is a device's value of a resource: lwm2mclient's defaults.
func (d *sharedDriver) sharedValue(j int, p format.Path) (format.Value, bool) {
	switch p.String() {
	case "/1/0/0":
		return format.IntegerValue(1), true
	case "/1/0/1":
		return format.IntegerValue(int64(d.spec.Lifetime)), true
	case "/1/0/7":
		return format.StringValue("U"), true
	case "/3/0/0":
		return format.StringValue("iotgate"), true
	case "/3/0/1":
		return format.StringValue("iotgate-fleet"), true
	case "/3/0/2":
		return format.StringValue(d.ids.nodeID(protoCoAP, d.spec.Lo+j)), true
	case "/19/0/0", "/19/1/0":
		return format.OpaqueValue(nil), true
	}
	return format.Value{}, false
}

// serve answers a request of the server to device j.
func (d *sharedDriver) serve(j int, m message.Message) {
	resp := message.Message{Token: append([]byte(nil), m.Token...), Type: message.NonConfirmable, MessageID: d.nextMID()}
	if m.Type == message.Confirmable {
		resp.Type, resp.MessageID = message.Acknowledgement, m.MessageID
	}
	path, _ := m.Options.Path()
	p, err := format.ParsePath("/" + strings.Trim(path, "/"))
	switch {
	case err != nil:
		resp.Code = codes.NotFound
	case m.Code == codes.GET:
		d.read(j, m, p, &resp)
	default: // Write, Execute, Create, Delete, Write-Attributes
		resp.Code = codes.Changed
		if m.Code == codes.DELETE {
			resp.Code = codes.Deleted
		}
		if d.onCommand != nil {
			d.onCommand(p.String())
		}
	}
	_ = d.send(j, resp)
}

func (d *sharedDriver) read(j int, m message.Message, p format.Path, resp *message.Message) {
	v, ok := d.sharedValue(j, p)
	if !ok {
		resp.Code = codes.NotFound
		return
	}
	ct := format.FormatText
	if v.Kind() == format.KindOpaque {
		ct = format.FormatOpaque
	}
	if a, err := m.Options.Accept(); err == nil {
		ct = uint16(a)
	}
	body, err := format.Encode(ct, p, []format.Record{{Path: p, Value: v}})
	if err != nil {
		resp.Code, resp.Payload = codes.NotAcceptable, []byte(err.Error())
		return
	}
	resp.Code, resp.Payload = codes.Content, body
	obs, oerr := m.Options.Observe()
	dev := &d.devs[j]
	switch {
	case oerr == nil && obs == 0 && p.String() == "/19/0/0":
		dev.mu.Lock()
		dev.observe, dev.seq = tokenKey(m.Token), 0
		dev.mu.Unlock()
		resp.Options = lwm2mclient.AddUint(resp.Options, message.Observe, 0)
	case oerr == nil && obs == 1 && p.String() == "/19/0/0":
		dev.mu.Lock()
		dev.observe = 0
		dev.mu.Unlock()
	default:
		if d.onCommand != nil {
			d.onCommand(p.String())
		}
	}
	resp.Options = lwm2mclient.AddUint(resp.Options, message.ContentFormat, uint32(ct))
}

// do sends a confirmable request from device j and waits for its
// response, resending it as CoAP does until ctx or the timeout ends.
func (d *sharedDriver) do(ctx context.Context, j int, code codes.Code, path string, query []string, payload []byte) (sharedResp, error) {
	tok := make([]byte, 8)
	_, _ = rand.Read(tok)
	m := message.Message{Token: tok, Code: code, Type: message.Confirmable, MessageID: d.nextMID(), Payload: payload}
	for _, seg := range strings.Split(strings.Trim(path, "/"), "/") {
		m.Options = m.Options.Add(message.Option{ID: message.URIPath, Value: []byte(seg)})
	}
	if payload != nil {
		m.Options = lwm2mclient.AddUint(m.Options, message.ContentFormat, uint32(message.AppLinkFormat))
	}
	for _, q := range query {
		m.Options = m.Options.Add(message.Option{ID: message.URIQuery, Value: []byte(q)})
	}
	ch := make(chan sharedResp, 1)
	key := tokenKey(tok)
	d.mu.Lock()
	d.pending[key] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.pending, key)
		d.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, d.spec.Timeout)
	defer cancel()
	for wait := time.Second; ; wait *= 2 {
		if err := d.send(j, m); err != nil {
			return sharedResp{}, err
		}
		t := time.NewTimer(wait)
		select {
		case r := <-ch:
			t.Stop()
			return r, nil
		case <-ctx.Done():
			t.Stop()
			return sharedResp{}, fmt.Errorf("no response to %s %s", code, path)
		case <-t.C:
		}
	}
}

// sharedLinks are the objects lwm2mclient registers by default.
const sharedLinks = "</1/0>,</19/0>,</19/1>,</3/0>"

func (d *sharedDriver) connect(ctx context.Context, i int, t *timing) (session, error) {
	j := i - d.spec.Lo
	q := []string{"ep=" + d.ids.nodeID(protoCoAP, i), "lwm2m=1.1", "b=U"}
	if d.spec.Lifetime > 0 {
		q = append(q, "lt="+strconv.Itoa(d.spec.Lifetime))
	}
	start := time.Now()
	resp, err := d.do(ctx, j, codes.POST, "/rd", q, []byte(sharedLinks))
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	if resp.code != codes.Created {
		return nil, fmt.Errorf("register: %s", resp.code)
	}
	loc := resp.location
	if loc == "" {
		return nil, errors.New("register: no Location-Path")
	}
	t.register.ok(time.Since(start))
	dev := &d.devs[j]
	dev.mu.Lock()
	dev.location = loc
	dev.mu.Unlock()
	return sharedSession{d: d, j: j}, nil
}

func (d *sharedDriver) close() {
	select {
	case <-d.done:
		return
	default:
	}
	close(d.done)
	for _, p := range d.groups {
		_ = p.Close()
	}
	d.wg.Wait()
}

// sharedSession is one registered device of a sharedDriver.
type sharedSession struct {
	d *sharedDriver
	j int
}

// uplink notifies the server's observation of /19/0/0, as lwm2mclient
// does when the device sets it.
func (s sharedSession) uplink(seq int64) (bool, error) {
	dev := &s.d.devs[s.j]
	dev.mu.Lock()
	tok := dev.observe
	dev.seq++
	n := dev.seq
	dev.mu.Unlock()
	if tok == 0 {
		return false, nil
	}
	var tb [8]byte
	binary.BigEndian.PutUint64(tb[:], tok)
	m := message.Message{Token: tb[:], Code: codes.Content, Type: message.NonConfirmable, MessageID: s.d.nextMID(),
		Payload: []byte("seq=" + strconv.FormatInt(seq, 10))}
	m.Options = lwm2mclient.AddUint(m.Options, message.Observe, n)
	m.Options = lwm2mclient.AddUint(m.Options, message.ContentFormat, uint32(format.FormatOpaque))
	return true, s.d.send(s.j, m)
}

func (s sharedSession) keepalive() error { return nil } // lifetime outlasts the hold

// close de-registers when graceful; otherwise the device just goes quiet,
// as in a power cut.
func (s sharedSession) close(ctx context.Context, graceful bool) error {
	dev := &s.d.devs[s.j]
	dev.mu.Lock()
	loc := dev.location
	dev.location, dev.observe = "", 0
	dev.mu.Unlock()
	if !graceful || loc == "" {
		return nil
	}
	resp, err := s.d.do(ctx, s.j, codes.DELETE, loc, nil, nil)
	if err != nil {
		return fmt.Errorf("de-register: %w", err)
	}
	if resp.code != codes.Deleted {
		return fmt.Errorf("de-register: %s", resp.code)
	}
	return nil
}
