package lwm2m_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/iotgate/iotgate/registry"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
)

// BenchmarkRegister is one re-registration of a NoSec device from 16
// clients at once: a Register of an endpoint already registered, its
// 2.01, and for our server the Observe of /19/0/0 it then sends and the
// client answers (with no data yet, as the fleet's clients: data would
// be stored as a message). It runs against our server (logging at info, as in
// production, into io.Discard) and, in the same run, against a bare
// go-coap /rd handler that only answers 2.01, as the fleet's coap
// baseline. The clients are the same for both, so the difference is our
// cost per registration, the Observe exchange included (allocations are
// process-wide, so they count the client's too).
func BenchmarkRegister(b *testing.B) {
	b.Run("iotgate", func(b *testing.B) {
		f := newFixture(b, func(o *lwm2m.Options) {
			o.Logger = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
		})
		runRegisters(b, f.srv.UDPAddr().String(), func(ep string) { f.device(ep, false) })
	})
	// The same with registrations saved to the store (persist.go): each
	// Register queues its record for the write-behind loop.
	b.Run("iotgate-saved", func(b *testing.B) {
		f := newFixture(b, func(o *lwm2m.Options) {
			o.Logger = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
			o.Sessions = o.Registry.(*registry.Registry)
		})
		runRegisters(b, f.srv.UDPAddr().String(), func(ep string) { f.device(ep, false) })
	})
	b.Run("gocoap", func(b *testing.B) {
		addr := serveBareRD(b, false)
		runRegisters(b, addr, func(string) {})
	})
	// The bare handler observing /19/0/0 after each Register through
	// go-coap's Observe: the exchange our server adds, at go-coap's cost.
	b.Run("gocoap-observe", func(b *testing.B) {
		addr := serveBareRD(b, true)
		runRegisters(b, addr, func(string) {})
	})
}

// runRegisters registers 64 clients per goroutine once (a first
// registration activates the device), then times re-registrations, each
// goroutine going round its clients. Many clients keep each address's
// traffic near a fleet's: go-coap's UDP server (the baseline's) checks a
// connection's whole response cache (an entry per request in the last
// 247 s) at every datagram from its address, so a few clients
// registering again and again would measure that cache rather than the
// registration.
func runRegisters(b *testing.B, server string, device func(ep string)) {
	const parallelism, perGoroutine = 8, 64
	clients := make([]*lwm2mclient.Client, parallelism*runtime.GOMAXPROCS(0)*perGoroutine)
	for i := range clients {
		ep := fmt.Sprintf("bench-%04d", i)
		device(ep)
		c, err := lwm2mclient.Dial(context.Background(), lwm2mclient.Config{Server: server, Endpoint: ep,
			Lifetime: 3600, MaxDatagram: 1500, RequestTimeout: 10 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		if err := c.Register(context.Background()); err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	var next atomic.Int64
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		first := int(next.Add(1)-1) * perGoroutine
		mine := clients[first%len(clients):][:perGoroutine]
		for i := 0; pb.Next(); i++ {
			if err := mine[i%perGoroutine].Register(context.Background()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// serveBareRD serves a go-coap /rd that answers every Register 2.01 with
// a Location-Path, and with observe then observes /19/0/0.
func serveBareRD(b *testing.B, observe bool) string {
	var next atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	r := mux.NewRouter()
	_ = r.Handle("/rd", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		qs, _ := req.Options().Queries()
		registered := false
		for _, q := range qs {
			registered = registered || strings.HasPrefix(q, "ep=")
		}
		if req.Code() != codes.POST || !registered {
			_ = w.SetResponse(codes.BadRequest, message.TextPlain, nil)
			return
		}
		_ = w.SetResponse(codes.Created, message.TextPlain, nil,
			message.Option{ID: message.LocationPath, Value: []byte("rd")},
			message.Option{ID: message.LocationPath, Value: fmt.Appendf(nil, "%d", next.Add(1))})
		if observe {
			cc := w.Conn()
			go func() {
				if _, err := cc.Observe(ctx, "/19/0/0", func(*pool.Message) {}); err != nil && ctx.Err() == nil {
					b.Error(err)
				}
			}()
		}
	}))
	l, err := coapNet.NewListenUDP("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := udp.NewServer(options.WithMux(r))
	go func() { _ = s.Serve(l) }()
	b.Cleanup(func() { s.Stop(); l.Close() })
	return l.LocalAddr().String()
}
