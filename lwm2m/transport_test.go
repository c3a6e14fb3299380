package lwm2m_test

import (
	"context"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/iotgate/iotgate/registry"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// rawPeer is a NoSec client made of a bare UDP socket, for the tests that
// need control of message IDs and retransmissions.
type rawPeer struct {
	t    *testing.T
	conn *net.UDPConn
}

func newRawPeer(t *testing.T, server net.Addr) *rawPeer {
	t.Helper()
	c, err := net.DialUDP("udp", nil, server.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawPeer{t: t, conn: c}
}

func encode(t *testing.T, m message.Message) []byte {
	t.Helper()
	size, err := coder.DefaultCoder.Size(m)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, size)
	if _, err := coder.DefaultCoder.Encode(m, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func (p *rawPeer) send(b []byte) {
	p.t.Helper()
	if _, err := p.conn.Write(b); err != nil {
		p.t.Fatal(err)
	}
}

// recv returns the next datagram, decoded.
func (p *rawPeer) recv() message.Message {
	p.t.Helper()
	buf := make([]byte, 2048)
	_ = p.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := p.conn.Read(buf)
	if err != nil {
		p.t.Fatalf("no datagram from the server: %v", err)
	}
	m := message.Message{Options: make(message.Options, 0, 16)}
	if _, err := coder.DefaultCoder.Decode(buf[:n], &m); err != nil {
		p.t.Fatal(err)
	}
	return m
}

// register is a confirmable Register of ep with message ID mid.
func register(t *testing.T, ep string, mid int32, links string) []byte {
	m := message.Message{Type: message.Confirmable, Code: codes.POST, MessageID: mid, Token: []byte{1, 2, 3, 4},
		Payload: []byte(links)}
	m.Options = m.Options.Add(message.Option{ID: message.URIPath, Value: []byte("rd")})
	m.Options = m.Options.Add(message.Option{ID: message.ContentFormat, Value: []byte{byte(message.AppLinkFormat)}})
	for _, q := range []string{"ep=" + ep, "lt=300", "lwm2m=1.1", "b=U"} {
		m.Options = m.Options.Add(message.Option{ID: message.URIQuery, Value: []byte(q)})
	}
	return encode(t, m)
}

// registered reads the answer to a Register and returns its location.
func (p *rawPeer) registered(mid int32) string {
	p.t.Helper()
	r := p.recv()
	loc, err := r.Options.LocationPath()
	if r.Type != message.Acknowledgement || r.MessageID != mid || r.Code != codes.Created || err != nil {
		p.t.Fatalf("answer to Register: %v %v %v %v", r.Type, r.MessageID, r.Code, err)
	}
	return loc
}

func TestLwM2MNoSecConnectionClosedWhenIdle(t *testing.T) {
	f := newFixture(t, func(o *lwm2m.Options) { o.NoSecIdleTimeout = 300 * time.Millisecond })
	d := f.device("idle", false)
	c := f.client(lwm2mclient.Config{Endpoint: "idle"})
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the platform to observe /19/0/0", func() bool { return c.Observed("/19/0/0") })
	eventually(t, "the idle connection to close", func() bool { return f.srv.Conns() == 0 })
	if _, ok := f.srv.Registration(d.DeviceID); !ok {
		t.Fatal("the registration left with the connection")
	}
	// The observation outlives go-coap's connection: the notification
	// comes on a new one.
	if err := c.SendData([]byte("after idle")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the notification to be stored", func() bool {
		msgs, err := f.reg.Messages(context.Background(), "p", d.DeviceID, 10)
		return err == nil && len(msgs) > 0 && string(msgs[0].Payload) == "after idle"
	})
	// So do requests to the client.
	eventually(t, "the connection to close again", func() bool { return f.srv.Conns() == 0 })
	if err := c.Set("/3/0/9", formatInt(7)); err != nil {
		t.Fatal(err)
	}
	cmd := f.waitCommand(d.DeviceID, f.command(d.DeviceID, "LwM2M", "READ", `{"path":"/3/0/9"}`, true), registry.AsyncSuccessful)
	if len(cmd.Result) == 0 {
		t.Fatalf("command %+v", cmd)
	}
}

func TestLwM2MRetransmittedRegisterKeepsRegistration(t *testing.T) {
	f := newFixture(t, func(o *lwm2m.Options) { o.NoSecIdleTimeout = 200 * time.Millisecond })
	d := f.device("retry", false)
	p := newRawPeer(t, f.srv.UDPAddr())
	req := register(t, "retry", 1234, "</1/0>,</3/0>")
	p.send(req)
	loc := p.registered(1234)
	// The 2.01 was lost: the client sends the same Register again, after
	// go-coap's connection (and its response cache) is gone.
	eventually(t, "the idle connection to close", func() bool { return f.srv.Conns() == 0 })
	p.send(req)
	if again := p.registered(1234); again != loc {
		t.Fatalf("retransmission answered %s, first answer %s", again, loc)
	}
	if r, ok := f.srv.Registration(d.DeviceID); !ok || "/rd/"+r.ID != loc {
		t.Fatalf("registration %+v, location %s", r, loc)
	}
	// A new Register (new message ID) is a new registration.
	p.send(register(t, "retry", 1235, "</1/0>,</3/0>"))
	if next := p.registered(1235); next == loc {
		t.Fatalf("a new Register kept location %s", loc)
	}
}

func TestLwM2MRetransmittedNotificationStoredOnce(t *testing.T) {
	f := newFixture(t, func(o *lwm2m.Options) { o.NoSecIdleTimeout = 200 * time.Millisecond })
	d := f.device("notify", false)
	p := newRawPeer(t, f.srv.UDPAddr())
	p.send(register(t, "notify", 1, "</1/0>,</3/0>,</19/0>"))
	p.registered(1)
	obs := p.recv()
	if obs.Code != codes.GET || obs.Type != message.Confirmable {
		t.Fatalf("expected the observation of /19/0/0, got %v %v", obs.Type, obs.Code)
	}
	if o, err := obs.Options.Observe(); err != nil || o != 0 {
		t.Fatalf("observe option %d, %v", o, err)
	}
	ack := message.Message{Type: message.Acknowledgement, Code: codes.Content, MessageID: obs.MessageID, Token: obs.Token}
	ack.Options = ack.Options.Add(message.Option{ID: message.Observe, Value: []byte{1}})
	p.send(encode(t, ack))
	notification := func(mid int32, seq byte, payload string) []byte {
		m := message.Message{Type: message.Confirmable, Code: codes.Content, MessageID: mid, Token: obs.Token, Payload: []byte(payload)}
		m.Options = m.Options.Add(message.Option{ID: message.Observe, Value: []byte{seq}})
		m.Options = m.Options.Add(message.Option{ID: message.ContentFormat, Value: []byte{byte(message.AppOctets)}})
		return encode(t, m)
	}
	acked := func(mid int32) {
		t.Helper()
		if r := p.recv(); r.Type != message.Acknowledgement || r.MessageID != mid {
			t.Fatalf("expected the ACK of %d, got %v %d", mid, r.Type, r.MessageID)
		}
	}
	first := notification(700, 2, "once")
	p.send(first)
	acked(700)
	// The ACK was lost: the client sends it again on a new connection.
	eventually(t, "the idle connection to close", func() bool { return f.srv.Conns() == 0 })
	p.send(first)
	acked(700)
	p.send(notification(701, 3, "next"))
	acked(701)
	var got []string
	eventually(t, "the notifications to be stored", func() bool {
		msgs, err := f.reg.Messages(context.Background(), "p", d.DeviceID, 10)
		got = got[:0]
		for _, m := range msgs {
			got = append(got, string(m.Payload))
		}
		return err == nil && len(msgs) > 0 && string(msgs[0].Payload) == "next"
	})
	if len(got) != 2 {
		t.Fatalf("stored %q, want [next once]", got)
	}
}

// The handlers do not run on go-coap's goroutine for each client address,
// which the fleet holds one of per registered device: go-coap's token
// matching alone (hash/crc64, a 16 KiB frame) would grow it to 32 KiB.
func TestLwM2MConnectionGoroutinesStaySmall(t *testing.T) {
	f := newFixture(t, func(o *lwm2m.Options) { o.NoSecIdleTimeout = time.Minute })
	const n = 200
	peers := make([]*rawPeer, n)
	for i := range peers {
		f.device("small"+strconv.Itoa(i), false)
		peers[i] = newRawPeer(t, f.srv.UDPAddr())
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i, p := range peers {
		p.send(register(t, "small"+strconv.Itoa(i), 1, "</1/0>,</3/0>"))
		p.registered(1)
	}
	runtime.ReadMemStats(&after)
	if c := f.srv.Conns(); c != n {
		t.Fatalf("%d connections, want %d", c, n)
	}
	per := (int64(after.StackInuse) - int64(before.StackInuse)) / n
	t.Logf("stack per connection: %d bytes", per)
	if per > 8<<10 {
		t.Fatalf("%d bytes of stack per connection, want at most 8 KiB", per)
	}
}

// within returns the next datagram if one comes within d.
func (p *rawPeer) within(d time.Duration) (message.Message, bool) {
	p.t.Helper()
	buf := make([]byte, 2048)
	_ = p.conn.SetReadDeadline(time.Now().Add(d))
	n, err := p.conn.Read(buf)
	if err != nil {
		return message.Message{}, false
	}
	m := message.Message{Options: make(message.Options, 0, 16)}
	if _, err := coder.DefaultCoder.Decode(buf[:n], &m); err != nil {
		p.t.Fatal(err)
	}
	return m, true
}

// The Observe of /19/0/0 that follows a registration is retransmitted
// with CoAP's back-off until it is answered (piggybacked, or by a
// separate response), and given up after four retransmissions.
func TestLwM2MAppDataObserveRetransmitted(t *testing.T) {
	const ack = 100 * time.Millisecond
	for _, tc := range []struct {
		name   string
		ignore int  // transmissions left unanswered; 5 = all of them
		split  bool // an empty ACK, then the answer in its own CON
	}{
		{name: "answered at once"},
		{name: "first transmission lost", ignore: 1},
		{name: "three transmissions lost", ignore: 3},
		{name: "separate response", split: true},
		{name: "never answered", ignore: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(o *lwm2m.Options) { o.AckTimeout = ack; o.NoSecIdleTimeout = time.Minute })
			d := f.device("rexmit", false)
			p := newRawPeer(t, f.srv.UDPAddr())
			p.send(register(t, "rexmit", 1, "</1/0>,</3/0>,</19/0>"))
			p.registered(1)
			var first message.Message
			var at []time.Duration // each transmission's time after the first
			var start time.Time
			for i := 0; i <= tc.ignore && i < 5; i++ {
				obs, ok := p.within(5 * time.Second)
				if !ok {
					t.Fatalf("transmission %d of the Observe did not come", i+1)
				}
				if obs.Code != codes.GET || obs.Type != message.Confirmable {
					t.Fatalf("transmission %d: %v %v", i+1, obs.Type, obs.Code)
				}
				if o, err := obs.Options.Observe(); err != nil || o != 0 {
					t.Fatalf("transmission %d: observe option %d, %v", i+1, o, err)
				}
				if i == 0 {
					first, start = obs, time.Now()
				} else if obs.MessageID != first.MessageID || string(obs.Token) != string(first.Token) {
					t.Fatalf("retransmission %d changed message id or token", i)
				}
				at = append(at, time.Since(start))
			}
			// Each wait doubles the previous one from at least the ACK
			// timeout (RFC 7252 §4.2), so retransmission k comes no sooner
			// than ack·(2^k − 1) after the first transmission. Only this
			// lower bound is checked: a loaded machine delays a
			// retransmission, and then the wait after it looks shorter.
			for k := 1; k < len(at); k++ {
				if floor := ack*time.Duration(1<<k-1) - 5*time.Millisecond; at[k] < floor {
					t.Errorf("retransmission %d came %v after the first, before %v: times %v do not back off", k, at[k], floor, at)
				}
			}
			content := func(typ message.Type, mid int32, payload string) []byte {
				m := message.Message{Type: typ, Code: codes.Content, MessageID: mid, Token: first.Token, Payload: []byte(payload)}
				m.Options = m.Options.Add(message.Option{ID: message.Observe, Value: []byte{1}})
				m.Options = m.Options.Add(message.Option{ID: message.ContentFormat, Value: []byte{byte(message.AppOctets)}})
				return encode(t, m)
			}
			switch {
			case tc.ignore == 5:
				// The last wait is 16 to 24 times ack; then it gives up.
				if m, ok := p.within(30 * ack); ok {
					t.Fatalf("a sixth transmission: %v %v", m.Type, m.Code)
				}
				// The observation is over: a late notification is not kept.
				p.send(content(message.Confirmable, 900, "late"))
			case tc.split:
				p.send(encode(t, message.Message{Type: message.Acknowledgement, Code: codes.Empty, MessageID: first.MessageID}))
				p.send(content(message.Confirmable, 901, "first value"))
				if r, ok := p.within(time.Second); !ok || r.Type != message.Acknowledgement || r.MessageID != 901 {
					t.Fatalf("the separate response was not acknowledged: %v %v", r.Type, r.MessageID)
				}
			default:
				p.send(content(message.Acknowledgement, first.MessageID, "first value"))
			}
			if tc.ignore < 5 {
				eventually(t, "the first value to be stored", func() bool {
					msgs, err := f.reg.Messages(context.Background(), "p", d.DeviceID, 10)
					return err == nil && len(msgs) == 1 && string(msgs[0].Payload) == "first value"
				})
				if m, ok := p.within(8 * ack); ok {
					t.Fatalf("sent again after the answer: %v %v", m.Type, m.Code)
				}
				return
			}
			time.Sleep(200 * time.Millisecond)
			if msgs, err := f.reg.Messages(context.Background(), "p", d.DeviceID, 10); err != nil || len(msgs) != 0 {
				t.Fatalf("after the observation was given up: %d messages stored (%v)", len(msgs), err)
			}
		})
	}
}
