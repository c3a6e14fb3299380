package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/iotgate/iotgate/api"
	"github.com/iotgate/iotgate/console"
	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/metrics"
)

// apiListener is one REST listener: HTTP or HTTPS, with the API's
// limits (timeouts, header cap, connections per address).
type apiListener struct {
	name string // "api" or "api-tls", for the log
	ln   net.Listener
	srv  *http.Server
}

// apiListeners binds api.listen (HTTP) and api.tls_listen (HTTPS), each
// that is set.
func (w *wiring) apiListeners(srv *api.Server) ([]*apiListener, error) {
	c := w.cfg.API
	var out []*apiListener
	consoleHandler := console.Handler(console.Endpoints{MQTT: w.cfg.MQTT.Listen, MQTTS: w.cfg.MQTT.TLSListen,
		CoAP: w.cfg.CoAP.Listen, DTLS: w.cfg.CoAP.DTLSListen})
	bind := func(name, addr string, tc *tls.Config) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s listen %s: %w", name, addr, err)
		}
		hs := srv.HTTPServer(tc)
		hs.Handler = console.Mount(hs.Handler, consoleHandler)
		if w.lwm2mServer != nil {
			hs.Handler = mountFirmware(hs.Handler, w.lwm2mServer.FirmwareHTTP())
		}
		if w.cfg.Metrics.Listen == "" {
			hs.Handler = metrics.Mount(hs.Handler, w.metricsHandler(ln.Addr()))
		}
		// The budget's wrapper goes first, so that the table's closes
		// (refusals and evictions) give the descriptor back.
		ln = w.apiConnTable().Listener(w.descriptors.forAPI(ln))
		out = append(out, &apiListener{name: name, ln: ln, srv: hs})
		return nil
	}
	if c.Listen != "" {
		if err := bind("api", c.Listen, nil); err != nil {
			return nil, err
		}
	}
	if c.TLSListen != "" {
		tc, err := w.certs.tlsConfig("api-tls", c.TLSCertFile, c.TLSKeyFile)
		if err == nil {
			err = bind("api-tls", c.TLSListen, tc)
		}
		if err != nil {
			for _, l := range out {
				l.ln.Close()
			}
			return nil, fmt.Errorf("api: %w", err)
		}
	}
	return out, nil
}

// mountFirmware serves the firmware downloads of LwM2M devices that pull
// over HTTP(S) (lwm2m.FirmwareHTTPPath) with fw, beside the API and not
// through it: the download token is their credential, so the API's
// authentication and per-credential rates do not apply. The listener's
// own limits (timeouts, connections per address, the descriptor budget)
// do, and fw refuses a banned address itself.
func mountFirmware(next, fw http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, lwm2m.FirmwareHTTPPath) {
			fw.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// serve runs until Shutdown; errc gets an unexpected end.
func (l *apiListener) serve(errc chan<- error) {
	var err error
	if l.srv.TLSConfig != nil {
		err = l.srv.ServeTLS(l.ln, "", "")
	} else {
		err = l.srv.Serve(l.ln)
	}
	if !errors.Is(err, http.ErrServerClosed) {
		errc <- fmt.Errorf("%s server: %w", l.name, err)
	}
}

func (l *apiListener) shutdown(ctx context.Context) error { return l.srv.Shutdown(ctx) }
