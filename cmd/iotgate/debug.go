package main

import (
	"encoding/json"
	"expvar"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// debugServer serves what an operator (or cmd/iotgate-fleet) reads to
// size a node, on its own address, off by default: /debug/vars (expvar:
// Go memory statistics, "goroutines", "rss_bytes", and the registry's
// group commit, "registry_commits") and /debug/pprof. It has no
// authentication, so debug_listen must be a loopback address or
// otherwise reachable only by the operator.
func debugServer(addr string, commits func() any) (*http.Server, net.Listener, error) {
	publishDebugVars()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("debug listen %s: %w", addr, err)
	}
	m := http.NewServeMux()
	m.HandleFunc("/debug/vars", func(w http.ResponseWriter, r *http.Request) {
		// expvar's own handler, plus this node's store's group commit,
		// which is not published process-wide: expvar names are global,
		// stores are not.
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		fmt.Fprintf(w, "{\n")
		expvar.Do(func(kv expvar.KeyValue) { fmt.Fprintf(w, "%q: %s,\n", kv.Key, kv.Value) })
		stats, _ := json.Marshal(commits())
		fmt.Fprintf(w, "%q: %s\n}\n", "registry_commits", stats)
	})
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &http.Server{Handler: m, ReadHeaderTimeout: 10 * time.Second}, ln, nil
}

var publishOnce sync.Once

func publishDebugVars() {
	publishOnce.Do(func() {
		expvar.Publish("goroutines", expvar.Func(func() any { return runtime.NumGoroutine() }))
		expvar.Publish("rss_bytes", expvar.Func(func() any { return residentBytes() }))
	})
}

// residentBytes is the process's resident set size from
// /proc/self/statm (-1 where there is none).
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return -1
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return -1
	}
	return pages * int64(os.Getpagesize())
}
