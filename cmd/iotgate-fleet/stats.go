package main

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// samples collects the outcome of many operations of one kind (connects,
// creates, uplinks): latencies of the successes and failures by reason.
// Latencies are kept whole (microseconds) so that percentiles merged
// across workers are exact.
type samples struct {
	mu       sync.Mutex
	Micros   []int64        `json:"micros"`
	Failures map[string]int `json:"failures"`
}

func newSamples() *samples { return &samples{Failures: map[string]int{}} }

func (s *samples) ok(d time.Duration) {
	s.mu.Lock()
	s.Micros = append(s.Micros, d.Microseconds())
	s.mu.Unlock()
}

func (s *samples) fail(err error) {
	r := reason(err)
	s.mu.Lock()
	s.Failures[r]++
	s.mu.Unlock()
}

// record is ok or fail, as err says.
func (s *samples) record(start time.Time, err error) {
	if err != nil {
		s.fail(err)
		return
	}
	s.ok(time.Since(start))
}

func (s *samples) counts() (ok, failed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.Failures {
		failed += n
	}
	return len(s.Micros), failed
}

// snapshot is a copy of s, safe to encode while s still records.
func (s *samples) snapshot() *samples {
	c := newSamples()
	c.merge(s)
	return c
}

// merge adds o's samples to s.
func (s *samples) merge(o *samples) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Micros = append(s.Micros, o.Micros...)
	for r, n := range o.Failures {
		s.Failures[r] += n
	}
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// Outcome summarises a batch of operations run over Seconds of wall time.
type Outcome struct {
	OK        int            `json:"ok"`
	Failed    int            `json:"failed"`
	Seconds   float64        `json:"seconds"`
	PerSecond float64        `json:"per_second"` // successes per second of wall time
	Latency   *Latency       `json:"latency,omitempty"`
	Failures  map[string]int `json:"failures,omitempty"`
	// CPU is what the phase cost in processor time, where it was
	// measured: on a machine whose cores the fleet shares with the
	// server, the rate is bounded by the two together.
	CPU *CPUUse `json:"cpu,omitempty"`
	// OpsPerCommit is how many of the phase's writes shared one durable
	// commit in iotgate's registry (group commit), where it reports it.
	OpsPerCommit float64 `json:"ops_per_commit,omitempty"`
}

// CPUUse is processor time (user and system) per successful operation.
type CPUUse struct {
	// ServerMicros is the server's (from /proc/{pid}/stat; needs
	// -server-pid), -1 when not known.
	ServerMicros float64 `json:"server_us_per_op"`
	// ServerCores is the server's CPU time over the phase's wall time.
	ServerCores float64 `json:"server_cores"`
	// ClientMicros is this process's: the fleet's own cost.
	ClientMicros float64 `json:"client_us_per_op"`
}

// outcome summarises s over wall-clock time d.
func (s *samples) outcome(d time.Duration) Outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := Outcome{OK: len(s.Micros), Seconds: round3(d.Seconds())}
	for _, n := range s.Failures {
		o.Failed += n
	}
	if len(s.Failures) > 0 {
		o.Failures = s.Failures
	}
	if d > 0 {
		o.PerSecond = round3(float64(o.OK) / d.Seconds())
	}
	if len(s.Micros) > 0 {
		v := slices.Clone(s.Micros)
		slices.Sort(v)
		q := func(p float64) float64 {
			i := int(p*float64(len(v))+0.5) - 1
			i = max(0, min(i, len(v)-1))
			return round3(float64(v[i]) / 1000)
		}
		o.Latency = &Latency{P50: q(0.50), P95: q(0.95), P99: q(0.99), Max: round3(float64(v[len(v)-1]) / 1000)}
	}
	return o
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

var addrPattern = regexp.MustCompile(`(\[[0-9a-f:]+\]|\d+\.\d+\.\d+\.\d+)(:\d+)?`)

// reason names a failure for the summary: a short, low-cardinality
// description (no addresses, no device names).
func reason(err error) string {
	var ce *connackError
	var ne net.Error
	var te *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ce):
		return ce.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "no free source port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.As(err, &te):
		return "tls: server certificate not trusted"
	}
	msg := addrPattern.ReplaceAllString(err.Error(), "ADDR")
	msg = strings.ReplaceAll(msg, "\n", " ")
	if len(msg) > 80 {
		msg = msg[:80]
	}
	return msg
}
