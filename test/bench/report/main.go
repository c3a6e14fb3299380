// Command report turns the outputs of test/bench/run.sh (iotgate-fleet
// JSON summaries and the registry's Go benchmark output) into the
// Markdown table of BENCHMARKS.md: each figure for iotgate beside its
// baseline measured in the same run, the ratio, the target and
// whether it is met.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

func main() {
	dir := flag.String("dir", ".", "run.sh's output directory")
	flag.Parse()
	if err := report(os.Stdout, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

// The parts of iotgate-fleet's summary the table uses.
type summary struct {
	Label     string     `json:"label"`
	Error     string     `json:"error"`
	Protocols []protocol `json:"protocols"`
}

type protocol struct {
	Protocol           string     `json:"protocol"`
	Devices            int        `json:"devices"`
	Create             *outcome   `json:"create"`
	Connect            *outcome   `json:"connect"`
	Handshake          *outcome   `json:"handshake"`
	Register           *outcome   `json:"register"`
	Reconnect          *outcome   `json:"reconnect"`
	ReconnectHandshake *outcome   `json:"reconnect_handshake"`
	ReconnectRegister  *outcome   `json:"reconnect_register"`
	ReconnectRounds    []*outcome `json:"reconnect_rounds"`
	Memory             *struct {
		RSS        float64 `json:"rss_bytes_per_device"`
		Goroutines float64 `json:"goroutines_per_device"`
		Devices    int     `json:"devices"`
	} `json:"memory"`
	Hold *struct {
		PerSecond float64  `json:"uplinks_per_second"`
		Ack       *latency `json:"uplink_ack_latency"`
		Commands  *outcome `json:"commands"`
	} `json:"hold"`
}

type outcome struct {
	OK        int            `json:"ok"`
	Failed    int            `json:"failed"`
	PerSecond float64        `json:"per_second"`
	Latency   *latency       `json:"latency"`
	Failures  map[string]int `json:"failures"`
	CPU       *struct {
		Server float64 `json:"server_us_per_op"`
		Cores  float64 `json:"server_cores"`
		Client float64 `json:"client_us_per_op"`
	} `json:"cpu"`
	OpsPerCommit float64 `json:"ops_per_commit"`
	// storms are the reconnect storms this one stands for (it is their
	// median by rate), when there were several.
	storms []*outcome
}

type latency struct {
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
}

// load reads name.json from dir; a missing file is a skipped run.
func load(dir, name string) (*protocol, error) {
	b, err := os.ReadFile(filepath.Join(dir, name+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(s.Protocols) == 0 {
		return nil, fmt.Errorf("%s: no protocol run (%s)", name, s.Error)
	}
	p := &s.Protocols[0]
	if p.Reconnect != nil && len(p.ReconnectRounds) > 1 {
		p.Reconnect.storms = p.ReconnectRounds
	}
	return p, nil
}

// row is one line of the table.
type row struct {
	metric, ours, base, ratio, target, verdict string
}

type table struct{ rows []row }

func (t *table) add(r row) { t.rows = append(t.rows, r) }

func (t *table) write(w io.Writer) {
	fmt.Fprintln(w, "| measure | iotgate | baseline (same run) | ratio | target | met |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, r := range t.rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.metric, r.ours, r.base, r.ratio, r.target, r.verdict)
	}
}

func rate(o *outcome) string {
	if o == nil {
		return "–"
	}
	s := fmt.Sprintf("%.0f/s", o.PerSecond)
	if o.Failed > 0 {
		s += fmt.Sprintf(" (%d failed: %v)", o.Failed, o.Failures)
	}
	if len(o.storms) > 1 {
		s += " (median; storms " + joinEach(o.storms, func(r *outcome) string { return fmt.Sprintf("%.0f", r.PerSecond) }) + ")"
	}
	return s
}

// joinEach is f of each storm, in order, joined with " / ".
func joinEach(storms []*outcome, f func(*outcome) string) string {
	parts := make([]string, len(storms))
	for i, r := range storms {
		parts[i] = f(r)
	}
	return strings.Join(parts, " / ")
}

func lat(o *outcome) string {
	if o == nil || o.Latency == nil {
		return "–"
	}
	return fmt.Sprintf("%.1f / %.1f / %.1f ms", o.Latency.P50, o.Latency.P95, o.Latency.P99)
}

func kib(p *protocol) string {
	if p == nil || p.Memory == nil {
		return "–"
	}
	return fmt.Sprintf("%.1f KiB", p.Memory.RSS/1024)
}

func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// ratioRow compares a rate of ours with a baseline's against a minimum
// ratio (0: informational).
func ratioRow(t *table, metric string, ours, base *outcome, baseName string, min float64) {
	if ours == nil || base == nil || base.PerSecond == 0 {
		return
	}
	r := ours.PerSecond / base.PerSecond
	rw := row{metric: metric, ours: rate(ours), base: baseName + " " + rate(base), ratio: fmt.Sprintf("%.0f%%", 100*r)}
	if min > 0 {
		rw.target = fmt.Sprintf("≥ %.0f%%", 100*min)
		rw.verdict = verdict(r >= min && ours.Failed == 0)
	}
	t.add(rw)
}

// cpu is an outcome's processor time per operation: the server's, and
// the fleet's own.
func cpu(o *outcome) string {
	if o == nil || o.CPU == nil || o.CPU.Server < 0 {
		return "–"
	}
	s := fmt.Sprintf("%.0f µs (%.2f cores)", o.CPU.Server, o.CPU.Cores)
	if o.CPU.Client >= 0 {
		s += fmt.Sprintf(", fleet %.0f µs", o.CPU.Client)
	}
	if len(o.storms) > 1 {
		s += "; storms " + joinEach(o.storms, func(r *outcome) string {
			if r.CPU == nil || r.CPU.Server < 0 {
				return "–"
			}
			return fmt.Sprintf("%.0f", r.CPU.Server)
		}) + " µs"
	}
	return s
}

// cpuRow compares the server's CPU per operation with a baseline's: on
// two cores shared with the fleet, a storm's rate also depends on what
// the fleet's clients cost, and this ratio does not.
func cpuRow(t *table, metric string, ours, base *outcome, baseName string) {
	if ours == nil || ours.CPU == nil || ours.CPU.Server <= 0 {
		return
	}
	rw := row{metric: metric, ours: cpu(ours)}
	if base != nil && base.CPU != nil && base.CPU.Server > 0 {
		rw.base = baseName + " " + cpu(base)
		rw.ratio = fmt.Sprintf("%.0f%%", 100*base.CPU.Server/ours.CPU.Server)
	}
	t.add(rw)
}

// restRow is the REST create storm against its target, with what it
// cost and how many creates shared a durable commit.
func restRow(t *table, o *outcome) {
	if o == nil {
		return
	}
	ours := rate(o) + ", " + lat(o)
	if o.CPU != nil {
		ours += "; CPU per create " + cpu(o)
	}
	if o.OpsPerCommit > 0 {
		ours += fmt.Sprintf("; %.1f creates per commit", o.OpsPerCommit)
	}
	ok := o.PerSecond >= 10000 && o.Latency != nil && o.Latency.P99 <= 50 && o.Failed == 0
	t.add(row{metric: fmt.Sprintf("REST durable device creations, 64 clients (%d devices)", o.OK), ours: ours,
		target: "≥ 10,000/s, p99 ≤ 50 ms", verdict: verdict(ok)})
}

func report(w io.Writer, dir string) error {
	var t table
	gm, err := load(dir, "iotgate-mqtt")
	if err != nil {
		return err
	}
	mochi, err := load(dir, "mochi-mqtt")
	if err != nil {
		return err
	}
	mosq, err := load(dir, "mosquitto-mqtt")
	if err != nil {
		return err
	}
	if gm != nil {
		if mochi != nil {
			ratioRow(&t, "MQTT reconnect storm, secret auth (connects/s)", gm.Reconnect, mochi.Reconnect, "mochi", 0.85)
		}
		if mosq != nil {
			ratioRow(&t, "MQTT reconnect storm, secret auth (connects/s)", gm.Reconnect, mosq.Reconnect, "mosquitto", 1.0)
		}
		if mochi != nil {
			ratioRow(&t, "MQTT first connect, activates the device (connects/s)", gm.Connect, mochi.Connect, "mochi", 0)
		}
		if mosq != nil {
			ratioRow(&t, "MQTT first connect, activates the device (connects/s)", gm.Connect, mosq.Connect, "mosquitto", 0)
		}
		if mochi != nil {
			cpuRow(&t, "MQTT reconnect storm: CPU per connect", gm.Reconnect, mochi.Reconnect, "mochi")
		}
		if mosq != nil {
			cpuRow(&t, "MQTT reconnect storm: CPU per connect", gm.Reconnect, mosq.Reconnect, "mosquitto")
		}
		base := ""
		if mochi != nil {
			base += "mochi " + lat(mochi.Reconnect)
		}
		if mosq != nil {
			base += "; mosquitto " + lat(mosq.Reconnect)
		}
		t.add(row{metric: "MQTT reconnect latency p50 / p95 / p99", ours: lat(gm.Reconnect), base: base})
		if gm.Memory != nil {
			bm := ""
			if mochi != nil {
				bm += "mochi " + kib(mochi)
			}
			if mosq != nil {
				bm += "; mosquitto " + kib(mosq)
			}
			t.add(row{metric: fmt.Sprintf("MQTT idle connections held; server RSS per connection"), ours: fmt.Sprintf("%d; %s", gm.Memory.Devices, kib(gm)),
				base: bm, target: "≈19,000; ≤ 16 KiB", verdict: verdict(gm.Memory.Devices >= 18000 && gm.Memory.RSS <= 16*1024)})
			gb := ""
			if mochi != nil && mochi.Memory != nil {
				gb = fmt.Sprintf("mochi %.2f", mochi.Memory.Goroutines)
			}
			t.add(row{metric: "MQTT goroutines per connection", ours: fmt.Sprintf("%.2f", gm.Memory.Goroutines), base: gb})
		}
		if gm.Hold != nil {
			ack := "–"
			if a := gm.Hold.Ack; a != nil {
				ack = fmt.Sprintf("p99 %.1f ms", a.P99)
			}
			mb := ""
			if mochi != nil && mochi.Hold != nil {
				mb = fmt.Sprintf("mochi %.0f/s", mochi.Hold.PerSecond)
			}
			t.add(row{metric: "MQTT QoS 1 property reports acknowledged (durably stored)", ours: fmt.Sprintf("%.0f/s, %s", gm.Hold.PerSecond, ack), base: mb})
		}
		restRow(&t, gm.Create)
	}
	if ms, err := load(dir, "iotgate-mqtts"); err != nil {
		return err
	} else if ms != nil {
		t.add(row{metric: "MQTTS reconnect storm (TLS handshake + secret auth)", ours: rate(ms.Reconnect) + ", " + lat(ms.Reconnect)})
	}

	gl, err := load(dir, "iotgate-lwm2m")
	if err != nil {
		return err
	}
	gc, err := load(dir, "gocoap-lwm2m")
	if err != nil {
		return err
	}
	gco, err := load(dir, "gocoap-observe-lwm2m")
	if err != nil {
		return err
	}
	if gl != nil {
		if gc != nil {
			ratioRow(&t, "LwM2M NoSec re-register storm (registers/s)", gl.Reconnect, gc.Reconnect, "go-coap /rd", 0.80)
			cpuRow(&t, "LwM2M re-register storm: CPU per register", gl.Reconnect, gc.Reconnect, "go-coap /rd")
			ratioRow(&t, "LwM2M NoSec first register, activates the device (registers/s)", gl.Connect, gc.Connect, "go-coap /rd", 0)
			t.add(row{metric: "LwM2M re-register latency p50 / p95 / p99", ours: lat(gl.Reconnect), base: "go-coap " + lat(gc.Reconnect)})
		}
		if gco != nil {
			ratioRow(&t, "LwM2M NoSec re-register storm against go-coap that also observes /19/0/0 (registers/s)", gl.Reconnect, gco.Reconnect, "go-coap /rd + Observe", 0)
			cpuRow(&t, "LwM2M re-register storm: CPU per register, both observing", gl.Reconnect, gco.Reconnect, "go-coap /rd + Observe")
		}
		if gl.Memory != nil {
			t.add(row{metric: "LwM2M registrations held; server RSS per registration", ours: fmt.Sprintf("%d; %s", gl.Memory.Devices, kib(gl)),
				base: "go-coap " + kib(gc), target: "100,000; ≤ 8 KiB", verdict: verdict(gl.Memory.Devices >= 100000 && gl.Memory.RSS <= 8*1024)})
		}
		restRow(&t, gl.Create)
	}
	gd, err := load(dir, "iotgate-dtls")
	if err != nil {
		return err
	}
	pd, err := load(dir, "pion-dtls")
	if err != nil {
		return err
	}
	if gd != nil && pd != nil {
		ratioRow(&t, "DTLS-PSK re-register storm (handshake + register/s vs handshakes/s)", gd.Reconnect, pd.Reconnect, "pion", 0.80)
		cpuRow(&t, "DTLS re-register storm: CPU per session (handshake + register vs handshake)", gd.Reconnect, pd.Reconnect, "pion")
		ratioRow(&t, "DTLS-PSK first register, activates the device", gd.Connect, pd.Connect, "pion", 0)
		t.add(row{metric: "DTLS handshake latency p50 / p95 / p99 (re-register storm)", ours: lat(gd.ReconnectHandshake), base: "pion " + lat(pd.ReconnectHandshake)})
		t.add(row{metric: "DTLS sessions held; server RSS per session", ours: fmt.Sprintf("%d; %s", gd.Memory.Devices, kib(gd)), base: "pion " + kib(pd),
			target: "measured"})
	}
	if err := registryRows(&t, filepath.Join(dir, "registry-bench.txt")); err != nil {
		return err
	}
	t.write(w)
	return nil
}

var (
	benchLine  = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op`)
	allocsPart = regexp.MustCompile(`(\d+) allocs/op`)
)

// registryRows adds the Go benchmark figures: flatness of the lookups
// from the smallest fleet to the largest, start-up with the largest, and
// group commit against one transaction per create.
func registryRows(t *table, path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	ns := map[string]float64{}
	allocs := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := benchLine.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			ns[m[1]] = v
			if a := allocsPart.FindStringSubmatch(sc.Text()); a != nil {
				allocs[m[1]], _ = strconv.Atoi(a[1])
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	sizes := map[int]bool{}
	for k := range ns {
		if i := strings.LastIndex(k, "/n="); i >= 0 {
			if n, err := strconv.Atoi(k[i+3:]); err == nil {
				sizes[n] = true
			}
		}
	}
	lo, hi := 0, 0
	for n := range sizes {
		if lo == 0 || n < lo {
			lo = n
		}
		if n > hi {
			hi = n
		}
	}
	if lo > 0 && hi > lo {
		for _, path := range []string{"device_id", "node_id", "fingerprint", "mqtt_secret", "psk"} {
			for _, via := range []string{"cached", "store"} {
				kl, kh := fmt.Sprintf("AuthPaths/%s/%s/n=%d", path, via, lo), fmt.Sprintf("AuthPaths/%s/%s/n=%d", path, via, hi)
				a, b := ns[kl], ns[kh]
				if a == 0 || b == 0 {
					continue
				}
				// Constant work (allocations) is what O(1) promises; the
				// time also grows as the working set leaves the CPU
				// caches, which the ratio shows.
				flat := allocs[kh]-allocs[kl] <= 1
				v := "work: " + verdict(flat) + "; time: ×" + strconv.FormatFloat(b/a, 'f', 1, 64)
				t.add(row{metric: fmt.Sprintf("registry %s lookup (%s), %s → %s devices", path, via, count(lo), count(hi)),
					ours: fmt.Sprintf("%s → %s; %d → %d allocs", dur(a), dur(b), allocs[kl], allocs[kh]), ratio: fmt.Sprintf("×%.2f", b/a),
					target: "flat (O(1))", verdict: v})
			}
		}
		a, b := ns[fmt.Sprintf("AuthPaths/sweep/idle/n=%d", lo)], ns[fmt.Sprintf("AuthPaths/sweep/idle/n=%d", hi)]
		if a > 0 && b > 0 {
			t.add(row{metric: fmt.Sprintf("expiry sweep, none due, %s → %s deadlines", count(lo), count(hi)), ours: fmt.Sprintf("%s → %s", dur(a), dur(b)),
				ratio: fmt.Sprintf("×%.2f", b/a)})
		}
		if d := ns[fmt.Sprintf("AuthPaths/sweep/due=256/n=%d", hi)]; d > 0 {
			t.add(row{metric: fmt.Sprintf("expiry sweep deleting 256 due devices among %s", count(hi)), ours: dur(d) + fmt.Sprintf(" (%s a device)", dur(d/256))})
		}
		if o := ns[fmt.Sprintf("AuthPaths/open/n=%d", hi)]; o > 0 {
			t.add(row{metric: fmt.Sprintf("registry start-up with %s devices (open, sweep, first lookup)", count(hi)), ours: dur(o), target: "< 5 s", verdict: verdict(o < 5e9)})
		}
	}
	naive, group := ns["CreateBatch/max_batch=1"], ns["CreateBatch/max_batch=256"]
	if naive > 0 && group > 0 {
		t.add(row{metric: "registry durable creates, 64 callers: group commit vs one transaction per create",
			ours: fmt.Sprintf("%.0f/s", 1e9/group), base: fmt.Sprintf("naive %.0f/s", 1e9/naive), ratio: fmt.Sprintf("×%.1f", naive/group)})
	}
	return nil
}

func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return strconv.Itoa(n)
}

func dur(ns float64) string {
	switch {
	case ns >= 1e9:
		return fmt.Sprintf("%.2f s", ns/1e9)
	case ns >= 1e6:
		return fmt.Sprintf("%.1f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}
