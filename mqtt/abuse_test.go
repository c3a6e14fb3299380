package mqtt

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry/guard"
)

// connectPacket encodes an IoTDA CONNECT (MQTT 3.1.1, or 5 with user
// properties).
func connectPacket(t testing.TB, version byte, id, ts, password string, userProps int) []byte {
	t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: version,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 60,
			ClientIdentifier: id + "_0_0_" + ts, UsernameFlag: true, Username: []byte(id),
			PasswordFlag: true, Password: []byte(password)}}
	for range userProps {
		pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: "k", Val: "v"})
	}
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// dialFrom dials addr from a loopback source address of its own.
func dialFrom(t testing.TB, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connack sends a CONNECT and returns the CONNACK's return (or reason)
// code, or an error if the server closed the connection without one.
func connack(t testing.TB, c net.Conn, connect []byte) (byte, error) {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(connect); err != nil {
		return 0, err
	}
	head := make([]byte, 2)
	if _, err := io.ReadFull(c, head); err != nil {
		return 0, err
	}
	if head[0] != 0x20 {
		t.Fatalf("first packet % x is not a CONNACK", head)
	}
	body := make([]byte, head[1])
	if _, err := io.ReadFull(c, body); err != nil {
		return 0, err
	}
	return body[1], nil
}

// closedSoon reports whether the server closes c (unanswered) within d.
func closedSoon(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, 1))
	return n == 0 && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err))
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// A brute force of 1,000 wrong passwords for one device from one address
// costs 15 HMACs: the identity is banned at the 15th failure, and every
// later CONNECT, the right password included, is refused 0x05 before any
// credential work.
func TestMQTTBruteForceIsBanned(t *testing.T) {
	e := newEnvLogging(t, slog.LevelInfo)
	e.secretDevice("brute_1", "right-secret", "", false)
	ts := hourStamp(time.Now())
	wrong := connectPacket(t, 4, "brute_1", ts, huaweiPassword("wrong-secret", ts), 0)
	codes := map[byte]int{}
	for range 1000 {
		code, err := connack(t, dialFrom(t, "127.0.2.1", e.srv.Addr()), wrong)
		if err != nil {
			t.Fatal(err)
		}
		codes[code]++
	}
	st := e.srv.Stats()
	limit := guard.Defaults().IdentityFailures.Max
	if codes[0x04] != limit || codes[0x05] != 1000-limit {
		t.Fatalf("codes %v, want %d × 0x04 then 0x05", codes, limit)
	}
	if st.CredentialChecks != uint64(limit) || st.BannedConnects != uint64(1000-limit) {
		t.Fatalf("%d credential checks, %d banned connects; want %d and %d", st.CredentialChecks, st.BannedConnects, limit, 1000-limit)
	}
	if st.Connects["bad_credentials"] != uint64(limit) || st.Connects["banned"] != uint64(1000-limit) ||
		st.AuthFailures["bad_secret"] != uint64(limit) {
		t.Fatalf("connects %v, auth failures %v; want %d bad credentials (bad secret) and %d banned",
			st.Connects, st.AuthFailures, limit, 1000-limit)
	}
	right := connectPacket(t, 4, "brute_1", ts, huaweiPassword("right-secret", ts), 0)
	if code, err := connack(t, dialFrom(t, "127.0.2.2", e.srv.Addr()), right); err != nil || code != 0x05 {
		t.Fatalf("the right password while banned: 0x%02x, %v; want 0x05", code, err)
	}
	if n := e.srv.Stats().CredentialChecks; n != uint64(limit) {
		t.Fatalf("the banned right password was checked (%d checks)", n)
	}
	// Refusals are logged at info, rate-limited, and never with a secret.
	logs := e.logs.String()
	if n := strings.Count(logs, "mqtt connection refused"); n < 10 || n > 200 {
		t.Errorf("%d refusal lines for 1,001 refusals; want the throttle's burst (100) and a few", n)
	}
	if !strings.Contains(logs, "identity or address banned") || !strings.Contains(logs, "suppressed_before") {
		t.Error("no ban line or no suppressed count in the log")
	}
	for _, secret := range []string{"right-secret", "wrong-secret", huaweiPassword("wrong-secret", ts)} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the log holds the secret or password %q", secret)
		}
	}
}

// A banned address is closed at accept, before TLS or CONNECT.
func TestMQTTBannedAddressClosedAtAccept(t *testing.T) {
	g := guard.NewLocal(guard.Defaults())
	e := newEnvWith(t, slog.LevelInfo, func(o *Options) { o.Guard = g })
	e.secretDevice("ban_addr", "s3cret-pw", "", false)
	if err := g.Ban(context.Background(), guard.Ban{Target: guard.Target{Prefix: netip.MustParsePrefix("127.0.3.0/24")}}); err != nil {
		t.Fatal(err)
	}
	ts := hourStamp(time.Now())
	right := connectPacket(t, 4, "ban_addr", ts, huaweiPassword("s3cret-pw", ts), 0)
	for _, addr := range []string{e.srv.Addr(), e.srv.TLSAddr()} {
		if !closedSoon(dialFrom(t, "127.0.3.9", addr), 2*time.Second) {
			t.Fatalf("a connection from a banned address to %s was not closed", addr)
		}
	}
	if st := e.srv.Stats(); st.BannedConnects != 2 || st.CredentialChecks != 0 {
		t.Fatalf("stats %+v, want 2 banned connects and no credential check", st)
	}
	if code, err := connack(t, dialFrom(t, "127.0.4.1", e.srv.Addr()), right); err != nil || code != 0 {
		t.Fatalf("another address: 0x%02x, %v", code, err)
	}
}

// A CONNECT is read within MaxConnectBytes before mochi sees it: 300
// connections each claiming a 1 MiB CONNECT are closed at their fixed
// header, and 300 that claim the limit and send 100 bytes hold memory
// for what they sent, not what they claimed.
func TestMQTTConnectBoundedBeforeAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 600 connections")
	}
	e := newEnvLogging(t, slog.LevelInfo)
	idle := heapInUse()
	mib := []byte{0x10, 0x80, 0x80, 0x40} // CONNECT, remaining length 1 MiB
	var conns []net.Conn
	for i := range 300 {
		c := dialFrom(t, "127.0.5."+itoa(1+i%100), e.srv.Addr())
		if _, err := c.Write(mib); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		if !closedSoon(c, 5*time.Second) {
			t.Fatalf("connection %d claiming 1 MiB was not closed", i)
		}
	}
	if n := e.srv.Stats().OversizedConnects; n != 300 {
		t.Fatalf("%d oversized CONNECTs counted, want 300", n)
	}
	// The limit (8 KiB) claimed, 100 bytes sent, the connections held.
	claim := append([]byte{0x10, 0xf9, 0x3f}, make([]byte, 100)...) // 8,185 + 3 bytes
	for i := range 300 {
		c := dialFrom(t, "127.0.6."+itoa(1+i%100), e.srv.Addr())
		if _, err := c.Write(claim); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	held := heapInUse()
	t.Logf("heap in use: idle %.1f MB, 300 CONNECTs claimed at 8 KiB held %.1f MB; VmRSS %s",
		mb(idle), mb(held), vmRSS())
	if held > idle+20<<20 {
		t.Fatalf("heap grew by %.1f MB, more than 20 MB", mb(held-idle))
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

func vmRSS() string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:"))
		}
	}
	return "?"
}

func itoa(i int) string { return strconv.Itoa(i) }

// An MQTT 5 CONNECT with 10,000 user properties (70 KB) is closed at its
// fixed header; one with 100 (under the size cap) is refused 0x95.
func TestMQTTConnectUserProperties(t *testing.T) {
	e := newEnvLogging(t, slog.LevelInfo)
	e.secretDevice("props_1", "s3cret-pw", "", false)
	ts := hourStamp(time.Now())
	pw := huaweiPassword("s3cret-pw", ts)

	start := time.Now()
	c := dialFrom(t, "127.0.7.1", e.srv.Addr())
	if _, err := connack(t, c, connectPacket(t, 5, "props_1", ts, pw, 10_000)); err == nil {
		t.Fatal("a CONNECT with 10,000 user properties was answered")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("refusing it took %v", d)
	}
	if code, err := connack(t, dialFrom(t, "127.0.7.1", e.srv.Addr()), connectPacket(t, 5, "props_1", ts, pw, 100)); err != nil || code != 0x95 {
		t.Fatalf("100 user properties: 0x%02x, %v; want 0x95", code, err)
	}
	if code, err := connack(t, dialFrom(t, "127.0.7.1", e.srv.Addr()), connectPacket(t, 5, "props_1", ts, pw, 32)); err != nil || code != 0 {
		t.Fatalf("32 user properties: 0x%02x, %v; want 0", code, err)
	}
	if st := e.srv.Stats(); st.OversizedConnects != 2 || st.CredentialChecks != 1 {
		t.Fatalf("stats %+v, want 2 oversized CONNECTs and 1 credential check", st)
	}
}

// Connections that have not sent a CONNECT are capped per address and in
// all; over a cap a new one is closed at accept.
func TestMQTTPendingConnectionCaps(t *testing.T) {
	e := newEnvWith(t, slog.LevelInfo, func(o *Options) { o.Limits = Limits{MaxPendingPerAddress: 3, MaxPending: 5} })
	e.secretDevice("pending_1", "s3cret-pw", "", false)
	ts := hourStamp(time.Now())
	right := connectPacket(t, 4, "pending_1", ts, huaweiPassword("s3cret-pw", ts), 0)
	var held []net.Conn
	for range 3 {
		held = append(held, dialFrom(t, "127.0.8.1", e.srv.Addr()))
	}
	if !closedSoon(dialFrom(t, "127.0.8.1", e.srv.Addr()), 2*time.Second) {
		t.Fatal("a 4th connection before CONNECT from one address was held")
	}
	for range 2 {
		held = append(held, dialFrom(t, "127.0.8.2", e.srv.Addr()))
	}
	for _, c := range held {
		if closedSoon(c, 50*time.Millisecond) {
			t.Fatal("a connection under the caps was closed")
		}
	}
	if _, err := connack(t, dialFrom(t, "127.0.8.3", e.srv.Addr()), right); err == nil {
		t.Fatal("a 6th connection before CONNECT was answered; the total cap is 5")
	}
	held[0].Close()
	eventually(t, func() bool {
		code, err := connack(t, dialFrom(t, "127.0.8.3", e.srv.Addr()), right)
		return err == nil && code == 0
	}, "a connection once a pending one closed")
	if n := e.srv.Stats().RefusedConnections; n < 2 {
		t.Fatalf("%d refused connections counted, want at least 2", n)
	}
}

// A CONNECT and the next packets in one segment all reach mochi.
func TestMQTTConnectPipelined(t *testing.T) {
	e := newEnv(t)
	e.secretDevice("pipe_1", "s3cret-pw", "", false)
	ts := hourStamp(time.Now())
	c := dialFrom(t, "127.0.9.1", e.srv.Addr())
	pingreq := []byte{0xc0, 0}
	if _, err := c.Write(append(connectPacket(t, 4, "pipe_1", ts, huaweiPassword("s3cret-pw", ts), 0), pingreq...)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 6)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, []byte{0x20, 2, 0, 0, 0xd0, 0}) {
		t.Fatalf("got % x, want CONNACK 0 then PINGRESP", got)
	}
}

// Publishes over the connection's budget, with a long topic or too many
// user properties are refused: MQTT 5 QoS 1 with a PUBACK reason code,
// MQTT 3.1.1 by closing the connection.
func TestMQTTUplinkLimits(t *testing.T) {
	e := newEnvWith(t, slog.LevelInfo, func(o *Options) {
		o.Limits = Limits{UplinkRate: 0.001, UplinkBurst: 3, MaxTopicBytes: 100, MaxUserProperties: 2}
	})
	e.secretDevice("up_5", "s3cret-pw", "", false)
	e.secretDevice("up_3", "s3cret-pw", "", false)
	ts := hourStamp(time.Now())
	ca, c5 := connect5(t, e.srv.Addr(), "up_5_0_0_"+ts, "up_5", huaweiPassword("s3cret-pw", ts), nil)
	if ca.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02x", ca.ReasonCode)
	}
	topic := "$oc/devices/up_5/sys/messages/up"
	pub := func(topic string, props int) byte {
		t.Helper()
		p := &paho5.Publish{Topic: topic, QoS: 1, Payload: []byte("{}"), Properties: &paho5.PublishProperties{}}
		for range props {
			p.Properties.User = append(p.Properties.User, paho5.UserProperty{Key: "k", Value: "v"})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := c5.Publish(ctx, p)
		if r == nil {
			t.Fatalf("publish: %v", err)
		}
		return r.ReasonCode
	}
	long := "$oc/devices/up_5/user/" + strings.Repeat("x", 100)
	const ok = 0 // any success code (< 0x80)
	tests := []struct {
		name  string
		topic string
		props int
		want  byte
	}{
		{"long topic", long, 0, 0x90},
		{"user properties", topic, 3, 0x83},
		{"1st", topic, 2, ok},
		{"2nd", topic, 0, ok},
		{"3rd", topic, 0, ok},
		{"over the budget", topic, 0, 0x97},
	}
	for _, tt := range tests {
		if got := pub(tt.topic, tt.props); got != tt.want && (tt.want != ok || got >= 0x80) {
			t.Fatalf("%s: PUBACK 0x%02x, want 0x%02x", tt.name, got, tt.want)
		}
	}
	if n := e.srv.Stats().LimitedPublishes; n != 3 {
		t.Fatalf("%d limited publishes counted, want 3", n)
	}

	c3 := e.mustConnect(dial{id: "up_3", secret: "s3cret-pw"})
	for range 3 {
		c3.pub(t, "$oc/devices/up_3/sys/messages/up", 1, "{}")
	}
	c3.Publish("$oc/devices/up_3/sys/messages/up", 1, false, "{}")
	c3.waitLost(t)
}

// A device that connects too often is banned for flapping: the connect
// that reaches the limit is refused 0x05, and so are the next ones.
func TestMQTTFlappingIsBanned(t *testing.T) {
	cfg := guard.Defaults()
	cfg.Flapping = guard.Window{Max: 3, Window: time.Minute, Ban: time.Minute}
	e := newEnvWith(t, slog.LevelInfo, func(o *Options) { o.Guard = guard.NewLocal(cfg) })
	e.secretDevice("flap_1", "s3cret-pw", "", false)
	ts := hourStamp(time.Now())
	right := connectPacket(t, 4, "flap_1", ts, huaweiPassword("s3cret-pw", ts), 0)
	want := []byte{0, 0, 0x05, 0x05}
	for i, w := range want {
		if code, err := connack(t, dialFrom(t, "127.0.10.1", e.srv.Addr()), right); err != nil || code != w {
			t.Fatalf("connect %d: 0x%02x, %v; want 0x%02x", i+1, code, err, w)
		}
	}
}

// A listener over its connect rate closes new connections at accept.
func TestMQTTConnectRate(t *testing.T) {
	e := newEnvWith(t, slog.LevelInfo, func(o *Options) { o.Limits = Limits{ConnectRate: 0.001, ConnectBurst: 2} })
	for i := range 2 {
		if closedSoon(dialFrom(t, "127.0.11.1", e.srv.Addr()), 100*time.Millisecond) {
			t.Fatalf("connection %d within the burst was closed", i+1)
		}
	}
	if !closedSoon(dialFrom(t, "127.0.11.2", e.srv.Addr()), 2*time.Second) {
		t.Fatal("a connection over the listener's rate was held")
	}
	// The rate is the listener's: MQTTS has its own budget.
	if closedSoon(dialFrom(t, "127.0.11.2", e.srv.TLSAddr()), 100*time.Millisecond) {
		t.Fatal("the MQTTS listener refused a connection within its own budget")
	}
	if n := e.srv.Stats().RefusedConnections; n != 1 {
		t.Fatalf("%d refused connections counted, want 1", n)
	}
}

// A flood of refused CONNECTs leaves nothing behind: after a GC the heap
// in use is where it was (what a flood raises RSS by is the collector's
// headroom over short-lived garbage, not memory held).
func TestMQTTRefusedFloodHoldsNoMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 connections")
	}
	e := newEnvLogging(t, slog.LevelInfo)
	e.secretDevice("leak_1", "s3cret-pw", "", false)
	ts := hourStamp(time.Now())
	wrong := connectPacket(t, 4, "leak_1", ts, huaweiPassword("wrong-pw", ts), 0)
	flood := func(n int) {
		for i := range n {
			// Not dialFrom: its cleanups would keep every client socket.
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.12." + itoa(1+i%50))}}
			c, err := d.Dial("tcp", e.srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := connack(t, c, wrong); err != nil {
				t.Fatal(err)
			}
		}
	}
	flood(200) // the ban, and the first of everything
	before := heapInUse()
	flood(10_000)
	eventually(t, func() bool { return e.srv.Stats().BannedConnects >= 10_000 }, "the refusals counted")
	after := heapInUse()
	t.Logf("heap in use before %.1f MB, after 10,000 refused CONNECTs %.1f MB", mb(before), mb(after))
	if after > before+2<<20 {
		t.Fatalf("the heap grew by %.1f MB", mb(after-before))
	}
}
