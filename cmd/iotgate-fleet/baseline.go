package main

import (
	"context"
	"encoding/hex"
	"errors"
	"expvar"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/pion/dtls/v2"
	dtlsnet "github.com/pion/dtls/v2/pkg/net"
	"github.com/pion/dtls/v2/pkg/protocol"
	"github.com/pion/dtls/v2/pkg/protocol/recordlayer"
	pionudp "github.com/pion/transport/v3/udp"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	coapOptions "github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/iotgate/iotgate/mqtt"
)

// The baselines are the bare libraries iotgate is built on, each doing
// the least its protocol needs, so that a ratio against them says how
// much of a cost is iotgate's own:
//
//   - mochi: a mochi-mqtt broker that lets everyone in (mochi's AllowHook)
//     on one TCP listener, no logging;
//   - coap: a go-coap UDP server whose /rd handler answers Register with
//     2.01 and a Location-Path, Update with 2.04 and De-register with
//     2.02, keeping each registration's endpoint in a map; with -observe
//     it also observes /19/0/0 after each Register, through go-coap's own
//     Observe, as an LwM2M server must (a Register ends the client's
//     observations) and as iotgate does;
//   - dtls: a pion/dtls server with the fleet's PSKs (the cipher suite
//     iotgate offers), handshaking concurrently, echoing what it reads.
//
// Each serves /debug/vars (with "goroutines") and /debug/pprof on -debug,
// as iotgate does on its debug_listen, prints its address on standard
// output once it accepts traffic, and stops on SIGTERM or SIGINT.
func baselineMain(args []string) error {
	if len(args) == 0 {
		return errors.New("baseline: want mochi, coap or dtls")
	}
	kind := args[0]
	fs := flag.NewFlagSet("iotgate-fleet baseline "+kind, flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve")
	debug := fs.String("debug", "", "address for /debug/vars and /debug/pprof (empty: none)")
	writesPending := fs.Int("writes-pending", mqtt.ClientWritesPending, "mochi: MaximumClientWritesPending (0: mochi's default; default: iotgate's)")
	readBuffer := fs.Int("read-buffer", mqtt.ClientReadBufferSize, "mochi: ClientNetReadBufferSize in bytes (0: mochi's default; default: iotgate's)")
	prefix := fs.String("prefix", "fleet", "dtls: node id prefix (as given to the fleet)")
	seed := fs.String("seed", "iotgate-fleet", "dtls: secret seed (as given to the fleet)")
	observe := fs.Bool("observe", false, "coap: observe /19/0/0 after each Register (the exchange an LwM2M server adds to it)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *debug != "" {
		ln, err := net.Listen("tcp", *debug)
		if err != nil {
			return err
		}
		go func() { _ = http.Serve(ln, debugMux()) }()
	}
	var addr string
	var shutdown func()
	var err error
	switch kind {
	case "mochi":
		addr, shutdown, err = serveMochiSized(*listen, *writesPending, *readBuffer)
	case "coap":
		addr, shutdown, err = serveCoAP(*listen, *observe)
	case "dtls":
		addr, shutdown, err = serveDTLS(*listen, identities{prefix: *prefix, seed: *seed})
	default:
		return fmt.Errorf("baseline: unknown server %q (want mochi, coap or dtls)", kind)
	}
	if err != nil {
		return err
	}
	fmt.Println(addr)
	<-ctx.Done()
	shutdown()
	return nil
}

// debugMux serves expvar (with the goroutine count) and pprof.
func debugMux() *http.ServeMux {
	publishGoroutines()
	m := http.NewServeMux()
	m.Handle("/debug/vars", expvar.Handler())
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return m
}

var goroutinesOnce sync.Once

func publishGoroutines() {
	goroutinesOnce.Do(func() {
		expvar.Publish("goroutines", expvar.Func(func() any { return runtime.NumGoroutine() }))
	})
}

// serveMochi runs bare mochi with iotgate's read buffer size.
func serveMochi(addr string, writesPending int) (string, func(), error) {
	return serveMochiSized(addr, writesPending, mqtt.ClientReadBufferSize)
}

// serveMochiSized runs bare mochi with the given per-connection buffer
// sizes (0: mochi's defaults); the baseline command defaults them to
// iotgate's, so that memory per connection compares alike.
func serveMochiSized(addr string, writesPending, readBuffer int) (string, func(), error) {
	opts := &mochi.Options{Logger: slog.New(slog.DiscardHandler), ClientNetReadBufferSize: readBuffer}
	if writesPending > 0 {
		opts.Capabilities = mochi.NewDefaultServerCapabilities()
		opts.Capabilities.MaximumClientWritesPending = int32(writesPending)
	}
	s := mochi.New(opts)
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return "", nil, err
	}
	// Bind first, so the port is known (and taken) before mochi serves.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	bound := ln.Addr().String()
	ln.Close()
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: bound})); err != nil {
		return "", nil, err
	}
	if err := s.Serve(); err != nil {
		return "", nil, err
	}
	// Not s.Close alone: it can deadlock when clients leave as it runs
	// (see mqtt.CloseBroker).
	return bound, func() { _ = mqtt.CloseBroker(s) }, nil
}

func serveCoAP(addr string, observe bool) (string, func(), error) {
	var next, observeFailed atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var regs sync.Map // registration id -> endpoint name
	r := mux.NewRouter()
	_ = r.Handle("/rd", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		if req.Code() != codes.POST {
			_ = w.SetResponse(codes.MethodNotAllowed, message.TextPlain, nil)
			return
		}
		ep := ""
		if qs, err := req.Options().Queries(); err == nil {
			for _, q := range qs {
				if len(q) > 3 && q[:3] == "ep=" {
					ep = q[3:]
				}
			}
		}
		if ep == "" {
			_ = w.SetResponse(codes.BadRequest, message.TextPlain, nil)
			return
		}
		id := strconv.FormatInt(next.Add(1), 10)
		regs.Store(id, ep)
		_ = w.SetResponse(codes.Created, message.TextPlain, nil,
			message.Option{ID: message.LocationPath, Value: []byte("rd")},
			message.Option{ID: message.LocationPath, Value: []byte(id)})
		if observe {
			// After the handler returns go-coap sends the 2.01; Observe
			// blocks until the client's first answer, so it runs apart.
			go observeAppData(ctx, w.Conn(), &observeFailed)
		}
	}))
	_ = r.Handle("/rd/{id}", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		id := req.RouteParams.Vars["id"]
		if _, ok := regs.Load(id); !ok {
			_ = w.SetResponse(codes.NotFound, message.TextPlain, nil)
			return
		}
		switch req.Code() {
		case codes.POST:
			_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
		case codes.DELETE:
			regs.Delete(id)
			_ = w.SetResponse(codes.Deleted, message.TextPlain, nil)
		default:
			_ = w.SetResponse(codes.MethodNotAllowed, message.TextPlain, nil)
		}
	}))
	l, err := coapNet.NewListenUDP("udp", addr)
	if err != nil {
		cancel()
		return "", nil, err
	}
	s := udp.NewServer(coapOptions.WithMux(r))
	go func() { _ = s.Serve(l) }()
	return l.LocalAddr().String(), func() {
		cancel()
		s.Stop()
		_ = l.Close()
		if n := observeFailed.Load(); n > 0 {
			fmt.Fprintf(os.Stderr, "baseline coap: %d observes got no 2.05\n", n)
		}
	}, nil
}

// observeAppData observes /19/0/0 on cc and drops the notifications; it
// counts an Observe that got no 2.05 in failed.
func observeAppData(ctx context.Context, cc mux.Conn, failed *atomic.Int64) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := cc.Observe(ctx, "/19/0/0", func(*pool.Message) {}); err != nil {
		failed.Add(1)
	}
}

func serveDTLS(addr string, ids identities) (string, func(), error) {
	cfg := &dtls.Config{
		PSK: func(identity []byte) ([]byte, error) {
			// The identity is the endpoint name; the key is that device's
			// secret, as the fleet derives it.
			return hex.DecodeString(ids.secret(ids.product(protoDTLS) + "_" + string(identity)))
		},
		CipherSuites:         []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8},
		ExtendedMasterSecret: dtls.RequireExtendedMasterSecret,
	}
	laddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return "", nil, err
	}
	// pion's dtls.Listen handshakes inside Accept, one at a time; this
	// accepts sessions and handshakes each in its own goroutine.
	lc := pionudp.ListenConfig{AcceptFilter: func(b []byte) bool {
		pkts, err := recordlayer.UnpackDatagram(b)
		if err != nil || len(pkts) < 1 {
			return false
		}
		var h recordlayer.Header
		return h.Unmarshal(pkts[0]) == nil && h.ContentType == protocol.ContentTypeHandshake
	}}
	ln, err := lc.Listen("udp", laddr)
	if err != nil {
		return "", nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				dc, err := dtls.ServerWithContext(ctx, dtlsnet.PacketConnFromConn(c), c.RemoteAddr(), cfg)
				cancel()
				if err != nil {
					c.Close()
					return
				}
				defer dc.Close()
				buf := make([]byte, 2048)
				for {
					n, err := dc.Read(buf)
					if err != nil {
						if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
							return
						}
						return
					}
					if _, err := dc.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), func() { _ = ln.Close() }, nil
}
