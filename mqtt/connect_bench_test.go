package mqtt

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry/guard"
)

// BenchmarkConnect is one MQTT 3.1.1 session of an activated device: TCP
// connect, CONNECT with secret authentication, CONNACK, DISCONNECT, from
// 16 clients at once, against our server and, in the same run, against a
// bare mochi broker that lets everyone in, with our per-connection buffer
// and queue sizes (as the fleet's mochi baseline). The
// client's work is the same in both, so the difference between them is
// our cost per session (allocations included: they are process-wide).
func BenchmarkConnect(b *testing.B) {
	const devices = 64
	connects := make([][]byte, devices)
	ts := hourStamp(time.Now())
	for i := range connects {
		id := fmt.Sprintf("bench_%02d", i)
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 60,
				ClientIdentifier: id + "_0_0_" + ts, UsernameFlag: true, Username: []byte(id),
				PasswordFlag: true, Password: []byte(huaweiPassword("secret-bench", ts))}}
		var buf bytes.Buffer
		if err := pk.ConnectEncode(&buf); err != nil {
			b.Fatal(err)
		}
		connects[i] = buf.Bytes()
	}

	b.Run("iotgate", func(b *testing.B) {
		// Each of the 64 devices reconnects thousands of times a second
		// here, which the flapping guard would ban; its counting stays,
		// with a limit no run reaches.
		e := newEnvWith(b, slog.LevelInfo, func(o *Options) {
			g := guard.Defaults()
			g.Flapping.Max = math.MaxInt32
			o.Guard = guard.NewLocal(g)
		})
		for i := range devices {
			id := fmt.Sprintf("bench_%02d", i)
			e.secretDevice(id, "secret-bench", "", false)
			if err := session(net.Dialer{}, e.srv.Addr(), connects[i]); err != nil { // activates the device
				b.Fatal(err)
			}
		}
		runSessions(b, e.srv.Addr(), connects)
	})
	b.Run("mochi", func(b *testing.B) {
		caps := mochi.NewDefaultServerCapabilities()
		caps.MaximumClientWritesPending = ClientWritesPending
		s := mochi.New(&mochi.Options{Logger: slog.New(slog.DiscardHandler), Capabilities: caps,
			ClientNetReadBufferSize: ClientReadBufferSize})
		if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
			b.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})); err != nil {
			b.Fatal(err)
		}
		if err := s.Serve(); err != nil {
			b.Fatal(err)
		}
		defer CloseBroker(s)
		runSessions(b, addr, connects)
	})
}

func runSessions(b *testing.B, addr string, connects [][]byte) {
	var next atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		n := next.Add(1)
		connect := connects[n%int64(len(connects))]
		// Each client dials from its own loopback address: a session's
		// socket stays in TIME_WAIT for a minute after it closes, and a
		// few runs' worth from one address would use up its ports.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(n))}}
		for pb.Next() {
			if err := session(d, addr, connect); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// session connects, expects CONNACK 0 and disconnects.
func session(d net.Dialer, addr string, connect []byte) error {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(connect); err != nil {
		return err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		return fmt.Errorf("CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		return fmt.Errorf("CONNACK % x", ack)
	}
	_, err = c.Write([]byte{0xE0, 0})
	return err
}
