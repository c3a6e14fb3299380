package mqtt

import (
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry/guard"
)

// BenchmarkConnectRefusal is the server's work to refuse one decoded
// CONNECT in authHook.OnConnect, the CONNACK write included (to a
// connection that discards it): a wrong password (registry lookup from
// the cache, HMAC) or an unknown device (a store read that finds
// nothing), against the same CONNECT for an identity banned
// automatically after 15 such failures (a map lookup). Decoding the CONNECT and accepting the socket, which both
// pay, are mochi's and the kernel's; a banned address pays neither.
// SECURITY.md gives the figures.
func BenchmarkConnectRefusal(b *testing.B) {
	for _, bc := range []struct {
		name           string
		banned, exists bool
	}{
		{"wrong-password", false, true},
		{"unknown-device", false, false},
		{"banned", true, true},
	} {
		banned := bc.banned
		b.Run(bc.name, func(b *testing.B) {
			cfg := guard.Defaults()
			cfg.AddressFailures.Max = 0
			if !banned {
				cfg.IdentityFailures.Max = 0 // wrong passwords never ban
			}
			g := guard.NewLocal(cfg)
			e := newEnvWith(b, slog.LevelInfo, func(o *Options) { o.Guard = g })
			if bc.exists {
				e.secretDevice("bench_refused", "right-secret", "", false)
			}
			if banned {
				for range cfg.IdentityFailures.Max {
					g.AuthFailed("bench_refused", netip.Addr{})
				}
				if !g.IdentityBanned("bench_refused") {
					b.Fatal("not banned")
				}
			}
			ts := hourStamp(time.Now())
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
				Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 60,
					ClientIdentifier: "bench_refused_0_0_" + ts, UsernameFlag: true, Username: []byte("bench_refused"),
					PasswordFlag: true, Password: []byte(huaweiPassword("wrong-secret", ts))}}
			cl := e.srv.broker.NewClient(sinkConn{}, "mqtt", "", false)
			cl.Properties.ProtocolVersion = 4
			checks := e.srv.Stats().CredentialChecks
			b.ReportAllocs()
			cpu0 := processCPU(b)
			for b.Loop() {
				if err := e.srv.auth.OnConnect(cl, pk); err == nil {
					b.Fatal("CONNECT accepted")
				}
			}
			// CPU time, unlike ns/op, does not count the time other
			// processes on a shared machine take from this one.
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
			if n := e.srv.Stats().CredentialChecks - checks; (banned || !bc.exists) != (n == 0) {
				b.Fatalf("%d credential checks", n)
			}
		})
	}
}

// processCPU is the process's user and system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sinkConn is a connection that discards what is written to it. Its
// addresses are made once, as a *net.TCPConn's are.
type sinkConn struct{}

var (
	sinkLocal  net.Addr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1883}
	sinkRemote net.Addr = &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 40000}
)

func (sinkConn) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (sinkConn) Write(p []byte) (int, error)      { return len(p), nil }
func (sinkConn) Close() error                     { return nil }
func (sinkConn) LocalAddr() net.Addr              { return sinkLocal }
func (sinkConn) RemoteAddr() net.Addr             { return sinkRemote }
func (sinkConn) SetDeadline(time.Time) error      { return nil }
func (sinkConn) SetReadDeadline(time.Time) error  { return nil }
func (sinkConn) SetWriteDeadline(time.Time) error { return nil }
