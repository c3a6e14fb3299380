package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// probe reads the server's resource use: resident memory and threads
// from /proc/{pid}/status (any server on this machine), goroutines and
// Go heap from its /debug/vars (iotgate with debug_listen set, and the
// baseline servers), and CPU and heap profiles from its /debug/pprof.
type probe struct {
	pid      int
	debugURL string // http://host:port, "" when the server has none
	http     *http.Client
}

// ServerSample is the server's resource use at one moment; -1 when not
// known.
type ServerSample struct {
	RSSBytes       int64 `json:"rss_bytes"`
	Threads        int64 `json:"threads"`
	Goroutines     int64 `json:"goroutines"`
	HeapInuseBytes int64 `json:"heap_inuse_bytes"`
	StackBytes     int64 `json:"stack_inuse_bytes"`
}

func (p *probe) sample(ctx context.Context) ServerSample {
	s := ServerSample{RSSBytes: -1, Threads: -1, Goroutines: -1, HeapInuseBytes: -1, StackBytes: -1}
	if p.pid > 0 {
		if f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid)); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				k, v, _ := strings.Cut(sc.Text(), ":")
				fs := strings.Fields(v)
				if len(fs) == 0 {
					continue
				}
				n, _ := strconv.ParseInt(fs[0], 10, 64)
				switch k {
				case "VmRSS":
					s.RSSBytes = n << 10 // kB
				case "Threads":
					s.Threads = n
				}
			}
			f.Close()
		}
	}
	if p.debugURL != "" {
		var vars struct {
			Goroutines int64 `json:"goroutines"`
			MemStats   struct {
				HeapInuse  int64
				StackInuse int64
			} `json:"memstats"`
		}
		if err := p.get(ctx, "/debug/vars", func(r io.Reader) error { return json.NewDecoder(r).Decode(&vars) }); err == nil {
			s.Goroutines, s.HeapInuseBytes, s.StackBytes = vars.Goroutines, vars.MemStats.HeapInuse, vars.MemStats.StackInuse
		}
	}
	return s
}

func (p *probe) get(ctx context.Context, path string, read func(io.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.debugURL+path, nil)
	if err != nil {
		return err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", path, resp.StatusCode)
	}
	return read(resp.Body)
}

// profile saves a pprof profile ("profile?seconds=N" for CPU, "heap")
// into dir/name.
func (p *probe) profile(ctx context.Context, kind, dir, name string) error {
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	return p.get(ctx, "/debug/pprof/"+kind, func(r io.Reader) error { _, err := io.Copy(f, r); return err })
}

// collect makes the server run a garbage collection (a heap profile
// asked for with gc=1 runs one first), so that a memory sample taken
// next counts what is live rather than what the collector has yet to
// free.
func (p *probe) collect(ctx context.Context) error {
	if p.debugURL == "" {
		return nil
	}
	return p.get(ctx, "/debug/pprof/heap?gc=1", func(r io.Reader) error { _, err := io.Copy(io.Discard, r); return err })
}

// cpuProfile starts a CPU profile of the next seconds and returns a
// function that waits for it to be saved.
func (p *probe) cpuProfile(ctx context.Context, seconds int, dir, name string) (wait func()) {
	if p.debugURL == "" || dir == "" || seconds <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds+30)*time.Second)
		defer cancel()
		if err := p.profile(ctx, fmt.Sprintf("profile?seconds=%d", seconds), dir, name); err != nil {
			fmt.Fprintf(os.Stderr, "iotgate-fleet: cpu profile %s: %v\n", name, err)
		}
	}()
	return func() { <-done }
}

// perDevice is a per-device resource figure at the plateau.
type perDevice struct {
	Before         ServerSample `json:"before"`
	Plateau        ServerSample `json:"plateau"`
	Devices        int          `json:"devices"`
	RSSBytes       float64      `json:"rss_bytes_per_device"`
	HeapBytes      float64      `json:"heap_bytes_per_device,omitempty"`
	GoroutinesEach float64      `json:"goroutines_per_device,omitempty"`
}

func perDeviceOf(before, plateau ServerSample, n int) *perDevice {
	pd := &perDevice{Before: before, Plateau: plateau, Devices: n}
	if n == 0 {
		return pd
	}
	if before.RSSBytes >= 0 && plateau.RSSBytes >= 0 {
		pd.RSSBytes = round3(float64(plateau.RSSBytes-before.RSSBytes) / float64(n))
	}
	if before.HeapInuseBytes >= 0 && plateau.HeapInuseBytes >= 0 {
		pd.HeapBytes = round3(float64(plateau.HeapInuseBytes+plateau.StackBytes-before.HeapInuseBytes-before.StackBytes) / float64(n))
	}
	if before.Goroutines >= 0 && plateau.Goroutines >= 0 {
		pd.GoroutinesEach = round3(float64(plateau.Goroutines-before.Goroutines) / float64(n))
	}
	return pd
}

// cpuTime is the server's processor time so far (user and system, from
// /proc/{pid}/stat), or -1 when it cannot be read.
func (p *probe) cpuTime() time.Duration {
	if p.pid <= 0 {
		return -1
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return -1
	}
	// The command name (field 2) may hold spaces; the fields after it
	// start at the last ')'. utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	// Linux reports them in USER_HZ, 100 per second on every
	// architecture Go supports.
	return time.Duration(ut+st) * (time.Second / 100)
}

// selfCPUTime is this process's processor time so far.
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter measures the processor time of a phase, the server's and
// this process's.
type cpuMeter struct {
	p              *probe
	start          time.Time
	server, client time.Duration
}

func (p *probe) startCPU() *cpuMeter {
	return &cpuMeter{p: p, start: time.Now(), server: p.cpuTime(), client: selfCPUTime()}
}

// per returns the CPU used since startCPU per each of ops operations:
// the server's, and this process's.
func (m *cpuMeter) per(ops int) *CPUUse {
	c := selfCPUTime()
	if c >= 0 && m.client >= 0 {
		c -= m.client
	}
	return m.perWithClient(ops, c)
}

// perWithClient is per for a fleet whose clients ran elsewhere (worker
// processes) and used client CPU in all (-1: not known).
func (m *cpuMeter) perWithClient(ops int, client time.Duration) *CPUUse {
	if ops <= 0 {
		return nil
	}
	wall := time.Since(m.start)
	u := &CPUUse{ServerMicros: -1, ServerCores: -1, ClientMicros: -1}
	if s := m.p.cpuTime(); s >= 0 && m.server >= 0 {
		u.ServerMicros = round3(float64((s - m.server).Microseconds()) / float64(ops))
		u.ServerCores = round3((s - m.server).Seconds() / wall.Seconds())
	}
	if client >= 0 {
		u.ClientMicros = round3(float64(client.Microseconds()) / float64(ops))
	}
	return u
}

// commitStats reads iotgate's group commit counters from /debug/vars;
// ok is false for a server that has none.
func (p *probe) commitStats(ctx context.Context) (commits, ops uint64, ok bool) {
	if p.debugURL == "" {
		return 0, 0, false
	}
	var vars struct {
		Commits *struct {
			Commits uint64 `json:"commits"`
			Ops     uint64 `json:"ops"`
		} `json:"registry_commits"`
	}
	if err := p.get(ctx, "/debug/vars", func(r io.Reader) error { return json.NewDecoder(r).Decode(&vars) }); err != nil || vars.Commits == nil {
		return 0, 0, false
	}
	return vars.Commits.Commits, vars.Commits.Ops, true
}
