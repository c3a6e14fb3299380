package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary serve as a worker process, so the tests
// exercise the multi-process mode (the fleet re-executes itself).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := workerMain(); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestFleetIdentities(t *testing.T) {
	ids := identities{prefix: "fleet", seed: "s"}
	if got := ids.deviceID(protoMQTT, 7); got != "fleet-mqtt_fleet-mqtt-0000007" {
		t.Errorf("deviceID = %q", got)
	}
	if got := ids.deviceID(protoDTLS, 7); got != "fleet-nb_fleet-dtls-0000007" {
		t.Errorf("deviceID = %q", got)
	}
	sec := ids.secret("d1")
	if _, err := hex.DecodeString(sec); err != nil || len(sec) != 32 {
		t.Errorf("secret %q is not 32 hex characters", sec)
	}
	if sec == ids.secret("d2") || sec != ids.secret("d1") {
		t.Error("secrets must be per device and deterministic")
	}
	// The README's formula: HMAC-SHA256(key = timestamp, message = secret).
	m := hmac.New(sha256.New, []byte("2024010100"))
	m.Write([]byte(sec))
	if got, want := mqttPassword(sec, "2024010100"), hex.EncodeToString(m.Sum(nil)); got != want {
		t.Errorf("password %s, want %s", got, want)
	}
	if got := mqttClientID("dev", "2024010100"); got != "dev_0_0_2024010100" {
		t.Errorf("client id %q", got)
	}
}

func TestFleetSourceIPs(t *testing.T) {
	seen := map[string]bool{}
	for i := range 1000 {
		ip := sourceIP(i, 1000)
		if !ip.IsLoopback() || ip[15] == 0 || ip[15] == 255 {
			t.Fatalf("device %d: source %v", i, ip)
		}
		if seen[ip.String()] {
			t.Fatalf("device %d: source %v used twice", i, ip)
		}
		seen[ip.String()] = true
	}
	if !sourceIP(5, 4).Equal(sourceIP(1, 4)) {
		t.Error("addresses should cycle after spread")
	}
	if sourceIP(3, 0) != nil {
		t.Error("spread 0 must leave the choice to the kernel")
	}
}

func TestFleetRefusesRemoteTargets(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{{"127.0.0.1:1883", true}, {"127.9.8.7:1", true}, {"[::1]:1883", true}, {"localhost:1", true},
		{"10.0.0.1:1883", false}, {"example.com:1883", false}} {
		if err := checkLoopback("-mqtt", tc.addr, false); (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.addr, err)
		}
		if err := checkLoopback("-mqtt", tc.addr, true); err != nil {
			t.Errorf("%s with -allow-remote: %v", tc.addr, err)
		}
	}
	if _, err := parseOptions([]string{"-api", "", "-mqtt", "192.0.2.1:1883"}); err == nil {
		t.Error("a remote MQTT target was accepted")
	}
	if _, err := parseOptions([]string{"-api", "http://192.0.2.1:8080", "-project", "p", "-token", "t"}); err == nil {
		t.Error("a remote API was accepted")
	}
}

func TestFleetFailureReasons(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&connackError{code: 4}, "connack 0x04 (bad username or password)"},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "connection refused"},
		{context.DeadlineExceeded, "timeout"},
		{&net.OpError{Op: "dial", Err: syscall.EADDRNOTAVAIL}, "no free source port"},
		{errors.New("register: 4.03 from 127.0.0.1:5683"), "register: 4.03 from ADDR"},
	} {
		if got := reason(tc.err); got != tc.want {
			t.Errorf("reason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestFleetPercentiles(t *testing.T) {
	s := newSamples()
	for i := 1; i <= 100; i++ {
		s.ok(time.Duration(i) * time.Millisecond)
	}
	s.fail(errors.New("x"))
	o := s.outcome(2 * time.Second)
	if o.OK != 100 || o.Failed != 1 || o.PerSecond != 50 || o.Failures["x"] != 1 {
		t.Fatalf("outcome %+v", o)
	}
	if l := o.Latency; l.P50 != 50 || l.P95 != 95 || l.P99 != 99 || l.Max != 100 {
		t.Fatalf("latency %+v", l)
	}
}

// The summary's reconnect storm is the median one by rate, and the
// storms keep their order.
func TestMedianStorm(t *testing.T) {
	storm := func(rate float64) merged { return merged{ops: &Outcome{PerSecond: rate}} }
	for _, tc := range []struct {
		rates []float64
		want  float64
	}{
		{[]float64{5}, 5},
		{[]float64{9, 3}, 3},
		{[]float64{7, 2, 5}, 5},
		{[]float64{1, 8, 4, 6}, 4},
		{[]float64{3, 3, 9}, 3},
	} {
		var storms []merged
		for _, r := range tc.rates {
			storms = append(storms, storm(r))
		}
		if got := medianStorm(storms).ops.PerSecond; got != tc.want {
			t.Errorf("median of %v: %v, want %v", tc.rates, got, tc.want)
		}
		if storms[0].ops.PerSecond != tc.rates[0] {
			t.Errorf("median of %v reordered the storms", tc.rates)
		}
	}
}

// TestFleetAgainstBaselines runs the whole cycle against the bare
// servers in this process: MQTT against mochi, LwM2M against the go-coap
// /rd handler, DTLS handshakes against pion; with two worker processes
// per protocol.
func TestFleetAgainstBaselines(t *testing.T) {
	mq, stopMQ, err := serveMochi("127.0.0.1:0", 64)
	if err != nil {
		t.Fatal(err)
	}
	defer stopMQ()
	cp, stopCoAP, err := serveCoAP("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer stopCoAP()
	dt, stopDTLS, err := serveDTLS("127.0.0.1:0", identities{prefix: "fleet", seed: "iotgate-fleet"})
	if err != nil {
		t.Fatal(err)
	}
	defer stopDTLS()
	o, err := parseOptions([]string{"-api", "", "-protocols", "mqtt,lwm2m,dtls", "-handshake-only",
		"-mqtt", mq, "-coap", cp, "-dtls", dt, "-n", "60", "-per-process", "30", "-hold", "1500ms",
		"-uplink-interval", "500ms", "-settle", "0s", "-timeout", "10s", "-deadline", "2m", "-rounds", "3",
		"-server-pid", fmt.Sprint(os.Getpid()), "-json", os.DevNull})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := runFleet(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Protocols) != 3 {
		t.Fatalf("%d protocols run", len(sum.Protocols))
	}
	for _, p := range sum.Protocols {
		if p.Workers != 2 {
			t.Errorf("%s: %d workers, want 2", p.Protocol, p.Workers)
		}
		for name, out := range map[string]*Outcome{"connect": p.Connect, "disconnect": p.Disconnect,
			"reconnect": p.Reconnect, "final disconnect": p.FinalDisconnect} {
			if out == nil || out.OK != 60 || out.Failed != 0 {
				t.Errorf("%s %s: %+v", p.Protocol, name, out)
			}
		}
		if len(p.ReconnectRounds) != 3 {
			t.Errorf("%s: %d reconnect storms, want 3", p.Protocol, len(p.ReconnectRounds))
		} else {
			var above, below int
			for _, r := range p.ReconnectRounds {
				if r.OK != 60 || r.Failed != 0 {
					t.Errorf("%s reconnect storm: %+v", p.Protocol, r)
				}
				if r.PerSecond > p.Reconnect.PerSecond {
					above++
				} else if r.PerSecond < p.Reconnect.PerSecond {
					below++
				}
			}
			if above > 1 || below > 1 || !slices.Contains(p.ReconnectRounds, p.Reconnect) {
				t.Errorf("%s: reconnect %.0f/s is not the median storm of %v", p.Protocol, p.Reconnect.PerSecond, p.ReconnectRounds)
			}
		}
		// Worker processes report their CPU; the server's is read from
		// /proc in ticks of 10 ms, so it may round to zero here.
		if p.Reconnect != nil {
			if c := p.Reconnect.CPU; c == nil || c.ClientMicros <= 0 || c.ServerMicros < 0 {
				t.Errorf("%s reconnect: CPU %+v", p.Protocol, c)
			}
		}
		if p.Memory == nil || p.Memory.Plateau.RSSBytes <= 0 {
			t.Errorf("%s: no memory sample: %+v", p.Protocol, p.Memory)
		}
		switch p.Protocol {
		case protoMQTT:
			// 60 devices, one uplink each per 500 ms, for 1.5 s.
			if h := p.Hold; h.UplinksSent < 120 || h.UplinksAcked != h.UplinksSent {
				t.Errorf("mqtt hold: %+v", h)
			}
		case protoCoAP:
			if p.Register == nil || p.Register.OK != 60 {
				t.Errorf("lwm2m register: %+v", p.Register)
			}
		case protoDTLS:
			if p.Handshake == nil || p.Handshake.OK != 60 || p.Register != nil {
				t.Errorf("dtls handshake: %+v, register %+v", p.Handshake, p.Register)
			}
		}
	}
}

// TestFleetReportsRefusals: a wrong secret is a failure by reason, not an
// error of the run.
func TestFleetReportsRefusals(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // a broker that refuses every CONNECT with 0x04
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 512)
				if _, err := c.Read(buf); err == nil {
					_, _ = c.Write([]byte{pkConnack << 4, 2, 0, 4})
				}
			}()
		}
	}()
	o, err := parseOptions([]string{"-api", "", "-mqtt", ln.Addr().String(), "-n", "5", "-hold", "0s",
		"-settle", "0s", "-reconnect=false", "-json", os.DevNull})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := runFleet(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	c := sum.Protocols[0].Connect
	if c.OK != 0 || c.Failed != 5 || c.Failures["connack 0x04 (bad username or password)"] != 5 {
		t.Fatalf("connect: %+v", c)
	}
	if !strings.Contains(fmt.Sprint(c.Failures), "0x04") {
		t.Fatal(c.Failures)
	}
}

// TestFleetCollectsBeforeMemorySamples: with -gc the server is made to
// collect garbage (a heap profile with gc=1) before each memory sample,
// so the per-device figure counts live memory; without it, never.
func TestFleetCollectsBeforeMemorySamples(t *testing.T) {
	cp, stopCoAP, err := serveCoAP("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer stopCoAP()
	for _, tc := range []struct {
		gc   bool
		want []string
	}{
		{true, []string{"/debug/pprof/heap?gc=1", "/debug/vars", "/debug/pprof/heap?gc=1", "/debug/vars"}},
		{false, []string{"/debug/vars", "/debug/vars"}},
	} {
		t.Run(fmt.Sprintf("gc=%v", tc.gc), func(t *testing.T) {
			var mu sync.Mutex
			var got []string
			debug := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				got = append(got, r.URL.RequestURI())
				mu.Unlock()
				if r.URL.Path == "/debug/vars" {
					fmt.Fprint(w, `{"goroutines": 10, "memstats": {"HeapInuse": 1000, "StackInuse": 100}}`)
				}
			}))
			defer debug.Close()
			o, err := parseOptions([]string{"-api", "", "-protocols", "lwm2m", "-coap", cp, "-n", "10",
				"-hold", "0s", "-settle", "0s", "-reconnect=false", "-timeout", "10s", "-deadline", "1m",
				"-debug-url", debug.URL, fmt.Sprintf("-gc=%v", tc.gc), "-json", os.DevNull})
			if err != nil {
				t.Fatal(err)
			}
			sum, err := runFleet(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if m := sum.Protocols[0].Memory; m == nil || m.Plateau.HeapInuseBytes != 1000 {
				t.Errorf("memory sample: %+v", m)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(got, tc.want) {
				t.Errorf("debug requests %q, want %q", got, tc.want)
			}
		})
	}
}
