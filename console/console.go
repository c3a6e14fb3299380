// Package console serves the web console: static HTML and JavaScript
// modules, compiled in with go:embed, that run in the operator's browser
// and use only the public REST API (the token travels in the
// X-Auth-Token header, from sessionStorage, never in a cookie). The
// package knows nothing of the API's handlers or the protocols: the
// server mounts Handler beside the API on the same listener.
package console

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// Path is the console's root; everything under it is the console's.
const Path = "/console/"

// CSP is the Content-Security-Policy of every console answer: scripts,
// styles and connections only from the gate itself, no inline code, no
// plugins, no framing, no <base>.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'"

//go:embed static
var static embed.FS

// Endpoints are the device-facing listen addresses ("host:port", empty
// when off) whose ports the console shows in a new device's connection
// details. Only the ports are published: the host is the one the browser
// reached the console by.
type Endpoints struct {
	MQTT, MQTTS, CoAP, DTLS string
}

// ports is the JSON the console reads from endpoints.json.
type ports struct {
	MQTT  int `json:"mqtt,omitempty"`
	MQTTS int `json:"mqtts,omitempty"`
	CoAP  int `json:"coap,omitempty"`
	DTLS  int `json:"dtls,omitempty"`
}

func port(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// Handler serves the console under Path: the embedded files, and
// endpoints.json (the device listeners' ports). Only GET and HEAD;
// /console redirects to /console/.
func Handler(e Endpoints) http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	endpoints, err := json.Marshal(ports{MQTT: port(e.MQTT), MQTTS: port(e.MQTTS), CoAP: port(e.CoAP), DTLS: port(e.DTLS)})
	if err != nil {
		panic(err)
	}
	files := http.StripPrefix(Path, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		// The files change with the binary: never use a stale copy.
		h.Set("Cache-Control", "no-cache")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		switch r.URL.Path {
		case strings.TrimSuffix(Path, "/"):
			http.Redirect(w, r, Path, http.StatusMovedPermanently)
		case Path + "endpoints.json":
			h.Set("Content-Type", "application/json")
			_, _ = w.Write(endpoints)
		default:
			files.ServeHTTP(w, r)
		}
	})
}

// Mount serves the console's paths with console and everything else with
// next (the API): the API's routing and 404s are untouched.
func Mount(next, console http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == strings.TrimSuffix(Path, "/") || strings.HasPrefix(p, Path) {
			console.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
