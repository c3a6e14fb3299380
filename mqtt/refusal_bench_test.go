package mqtt

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry/guard"
)

// BenchmarkConnectRefusal is the server's work to refuse one decoded
// CONNECT in authHook.OnConnect, the CONNACK write included (to a
// connection that discards it): a wrong password (registry lookup from
// the cache, HMAC), against the same CONNECT for a banned identity (a
// map lookup). Decoding the CONNECT and accepting the socket, which both
// pay, are mochi's and the kernel's; a banned address pays neither.
// SECURITY.md gives the figures.
func BenchmarkConnectRefusal(b *testing.B) {
	for _, banned := range []bool{false, true} {
		name := "wrong-password"
		if banned {
			name = "banned"
		}
		b.Run(name, func(b *testing.B) {
			cfg := guard.Defaults()
			cfg.IdentityFailures.Max, cfg.AddressFailures.Max = 0, 0 // wrong passwords never ban here
			g := guard.NewLocal(cfg)
			e := newEnvWith(b, slog.LevelInfo, func(o *Options) { o.Guard = g })
			e.secretDevice("bench_refused", "right-secret", "", false)
			if banned {
				if err := g.Ban(context.Background(), guard.Ban{Target: guard.Target{Identity: "bench_refused"}}); err != nil {
					b.Fatal(err)
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
			for b.Loop() {
				if err := e.srv.auth.OnConnect(cl, pk); err == nil {
					b.Fatal("CONNECT accepted")
				}
			}
			if n := e.srv.Stats().CredentialChecks - checks; banned != (n == 0) {
				b.Fatalf("%d credential checks", n)
			}
		})
	}
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
