package test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The MQTT brute-force flood against the real binary (issue 19): a
// wrong-password CONNECT flood for one device while legitimate devices
// connect at a steady pace, against a baseline without the attack, and
// the same flood against a server whose bans are off (every attempt a
// full authentication). Each phase is bounded (mqttFloodPhase); the figures
// it logs are those of SECURITY.md.
func TestMQTTBruteForceFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the server for 20 s")
	}
	if raceEnabled {
		t.Skip("timings under the race detector say nothing")
	}
	// At info, as in production: debug writes lines for every session.
	g := StartGate(t, GateOptions{LogLevel: "info"})
	devs := floodDevices(t, g, 200)

	base := runFloodPhase(t, g, devs, attackNone)
	attack := runFloodPhase(t, g, devs, attackBruteForce)
	scan := runFloodPhase(t, g, devs, attackScan)
	report := func(name string, r floodResult) {
		t.Logf("%-22s legit %5d/%5d ok (%.2f%%), p50 %6.2f ms, p99 %6.2f ms (after the first second %6.2f ms); attack %6d attempts (%5.0f/s) %v; server CPU %.2f s, RSS max %d MB (%d MB in the first second)",
			name, r.legitOK, r.legitTried, 100*r.successRate(), ms(r.p(0.50)), ms(r.p(0.99)), ms(quantile(r.late, 0.99)), r.attempts,
			float64(r.attempts)/mqttFloodPhase.Seconds(), r.codes, r.cpu.Seconds(), r.rssMax>>20, r.rssFirst>>20)
	}
	report("baseline", base)
	report("brute force, bans on", attack)
	report("scan, bans on", scan)

	// The victim is banned after exactly 15 failures: 15 answers 0x04
	// (a credential checked), every other 0x05 (banned, nothing checked).
	if attack.codes[0x04] != 15 || attack.codes[0x05] != attack.attempts-15 {
		t.Errorf("attack answers %v over %d attempts: want 15 × 0x04, the rest 0x05", attack.codes, attack.attempts)
	}
	if code := mqttConnack(t, "127.0.61.1", g.MQTT, floodConnect("flood_victim", floodSecret)); code != 0x05 {
		t.Errorf("the victim's right password while banned: 0x%02x, want 0x05", code)
	}

	// The same flood with bans off: every attempt is a full authentication.
	off := StartGate(t, GateOptions{LogLevel: "info",
		Limits: "auth_failures:\n  max: 0\naddress_auth_failures:\n  max: 0\n"})
	offDevs := floodDevices(t, off, 200)
	full := runFloodPhase(t, off, offDevs, attackBruteForce)
	report("brute force, bans off", full)
	if full.codes[0x04] != full.attempts {
		t.Errorf("bans off: answers %v over %d attempts, want all 0x04", full.codes, full.attempts)
	}

	// The scan's 16 addresses are banned after 100 failures each; later
	// connections are closed at accept, unanswered.
	if scan.codes[0x04] > 16*100 || scan.codes[0xff] < scan.attempts/2 {
		t.Errorf("scan answers %v over %d attempts: want at most 1,600 × 0x04, the rest closed at accept", scan.codes, scan.attempts)
	}

	// The legitimate connects' share of a phase's CPU is the baseline's
	// per connect times the phase's connects (a starved client makes
	// fewer).
	perLegit := base.cpu.Seconds() / float64(base.legitTried)
	perAttempt := func(r floodResult) float64 {
		return 1e6 * (r.cpu.Seconds() - perLegit*float64(r.legitTried)) / float64(r.attempts)
	}
	t.Logf("server CPU per legitimate connect (baseline) %.1f µs; per attempt: identity banned %.1f µs, address banned %.1f µs, full authentication %.1f µs",
		1e6*perLegit, perAttempt(attack), perAttempt(scan), perAttempt(full))

	for _, r := range []struct {
		name string
		res  floodResult
	}{{"brute force", attack}, {"scan", scan}} {
		if rate := r.res.successRate(); rate < 0.99 {
			t.Errorf("%s: legitimate success rate %.2f%%, want at least 99%%", r.name, 100*rate)
		}
		// The floor is this shared machine's scheduling noise: another
		// process's burst moves a p99 of 1,500 connects by tens of ms.
		if b, a := max(base.p(0.99), 20*time.Millisecond), r.res.p(0.99); a > 3*b {
			t.Errorf("%s: legitimate p99 %v, more than 3× the baseline's %v", r.name, a, b)
		}
	}
}

// mqttFloodPhase is how long each phase lasts; mqttFloodRate caps the attack's
// CONNECTs a second.
const (
	mqttFloodPhase = 5 * time.Second
	mqttFloodRate  = 2000
)

const floodSecret = "floodSecret0001"

// floodDevices creates n devices (and the victim) of a new product.
func floodDevices(t *testing.T, g *Gate, n int) []string {
	t.Helper()
	g.CreateProduct("flood", "MQTT")
	ids := make([]string, n)
	for i := range ids {
		node := fmt.Sprintf("d%03d", i)
		g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": node, "product_id": "flood",
			"auth_info": map[string]any{"secret": floodSecret, "secure_access": false}})
		ids[i] = "flood_" + node
	}
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "victim", "product_id": "flood",
		"auth_info": map[string]any{"secret": floodSecret, "secure_access": false}})
	return ids
}

type floodResult struct {
	legitTried, legitOK int
	latencies           []time.Duration
	late                []time.Duration // of connects begun after the phase's first second
	attempts            int
	codes               map[byte]int
	cpu                 time.Duration
	rssMax              int64
	rssFirst            int64 // the peak within the phase's first second
}

func (r floodResult) successRate() float64 { return float64(r.legitOK) / float64(max(r.legitTried, 1)) }

func (r floodResult) p(q float64) time.Duration { return quantile(r.latencies, q) }

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// The attacks of a flood phase.
type floodAttack int

const (
	attackNone floodAttack = iota
	// attackBruteForce: wrong passwords for flood_victim, from 16
	// loopback addresses (one address's ephemeral ports would run out).
	attackBruteForce
	// attackScan: wrong passwords for ever new device ids, from 16 other
	// addresses: the address limit bans them.
	attackScan
)

// runFloodPhase runs mqttFloodPhase of legitimate connects (8 clients, one
// connect every 25 ms each, each device at most a few times a minute:
// under the flapping limit) and of the attack: 8 attackers sending
// CONNECTs as fast as they are answered, up to mqttFloodRate in all. The
// clients share the server's two cores; an unpaced attack would measure
// how the kernel schedules them more than the server.
func runFloodPhase(t *testing.T, g *Gate, devs []string, attack floodAttack) floodResult {
	t.Helper()
	pid := g.cmd.Process.Pid
	res := floodResult{codes: map[byte]int{}}
	cpu0 := procCPU(t, pid)
	stop := make(chan struct{})
	var mu sync.Mutex
	var wg sync.WaitGroup

	began := time.Now()
	var next atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			src := fmt.Sprintf("127.0.40.%d", w+1)
			tick := time.NewTicker(25 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				id := devs[int(next.Add(1))%len(devs)]
				start := time.Now()
				code, err := mqttSession(src, g.MQTT, floodConnect(id, floodSecret))
				d := time.Since(start)
				mu.Lock()
				res.legitTried++
				if err == nil && code == 0 {
					res.legitOK++
					res.latencies = append(res.latencies, d)
					if start.Sub(began) > time.Second {
						res.late = append(res.late, d)
					}
				}
				mu.Unlock()
			}
		})
	}
	if attack != attackNone {
		wrong := floodConnect("flood_victim", "wrongSecret0001")
		for a := range 8 {
			wg.Go(func() {
				pace := time.NewTicker(8 * time.Second / mqttFloodRate)
				defer pace.Stop()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-pace.C:
					}
					src := fmt.Sprintf("127.0.50.%d", 1+(a*2+i%2))
					if attack == attackScan {
						src = fmt.Sprintf("127.0.51.%d", 1+(a*2+i%2))
						wrong = floodConnect(fmt.Sprintf("scan_%d_%d", a, i), "wrongSecret0001")
					}
					code, err := mqttSession(src, g.MQTT, wrong)
					mu.Lock()
					res.attempts++
					if err != nil {
						res.codes[0xff]++
					} else {
						res.codes[code]++
					}
					mu.Unlock()
				}
			})
		}
	}
	deadline := time.After(mqttFloodPhase)
	sample := time.NewTicker(100 * time.Millisecond)
loop:
	for {
		select {
		case <-deadline:
			break loop
		case <-sample.C:
			res.rssMax = max(res.rssMax, procRSS(t, pid))
			if time.Since(began) <= time.Second {
				res.rssFirst = res.rssMax
			}
		}
	}
	sample.Stop()
	close(stop)
	wg.Wait()
	res.cpu = procCPU(t, pid) - cpu0
	slices.Sort(res.latencies)
	slices.Sort(res.late)
	return res
}

// floodConnect is an IoTDA MQTT 3.1.1 CONNECT (sign_type 0).
func floodConnect(id, secret string) []byte {
	ts := time.Now().UTC().Format("2006010215")
	m := hmac.New(sha256.New, []byte(ts))
	m.Write([]byte(secret))
	pw := hex.EncodeToString(m.Sum(nil))
	cid := id + "_0_0_" + ts
	var body []byte
	str := func(s string) { body = append(body, byte(len(s)>>8), byte(len(s))); body = append(body, s...) }
	str("MQTT")
	body = append(body, 4, 0xc2, 0, 60) // level 4; username, password, clean session; keepalive 60
	str(cid)
	str(id)
	str(pw)
	pk := []byte{0x10}
	for n := len(body); ; {
		b := byte(n & 0x7f)
		if n >>= 7; n > 0 {
			pk = append(pk, b|0x80)
			continue
		}
		pk = append(pk, b)
		break
	}
	return append(pk, body...)
}

// mqttSession dials from src, sends connect and returns the CONNACK's
// code; an accepted session is ended with DISCONNECT.
func mqttSession(src, addr string, connect []byte) (byte, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(connect); err != nil {
		return 0, err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		return 0, err
	}
	if ack[0] != 0x20 {
		return 0, fmt.Errorf("not a CONNACK: % x", ack)
	}
	if ack[3] == 0 {
		_, _ = c.Write([]byte{0xe0, 0})
	}
	return ack[3], nil
}

func mqttConnack(t *testing.T, src, addr string, connect []byte) byte {
	t.Helper()
	code, err := mqttSession(src, addr, connect)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// procCPU is the process's user and system CPU time so far.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// procRSS is the process's resident set size in bytes.
func procRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// 300 connections whose CONNECT claims 1 MiB, then 300 that claim the
// 8 KiB limit and send 100 bytes, leave the server's RSS within 20 MB of
// idle (issue 19: mochi alone reserved each claimed MiB, 148 → 373 MB).
func TestMQTTConnectClaimsRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 600 connections")
	}
	g := StartGate(t, GateOptions{LogLevel: "info"})
	pid := g.cmd.Process.Pid
	time.Sleep(time.Second)
	idle := procRSS(t, pid)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	open := func(src string, b []byte) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", g.MQTT)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		open(fmt.Sprintf("127.0.62.%d", 1+i%100), []byte{0x10, 0x80, 0x80, 0x40}) // claims 1 MiB
	}
	claim := append([]byte{0x10, 0xf9, 0x3f}, make([]byte, 100)...) // claims 8,188 bytes
	for i := range 300 {
		open(fmt.Sprintf("127.0.63.%d", 1+i%100), claim)
	}
	time.Sleep(time.Second)
	held := procRSS(t, pid)
	closed := 0
	for _, c := range conns[:300] {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			closed++
		}
	}
	t.Logf("RSS idle %.1f MB, with 300 × 1 MiB claimed and 300 × 8 KiB claimed (100 B sent) %.1f MB; %d of the 1 MiB claims closed",
		float64(idle)/(1<<20), float64(held)/(1<<20), closed)
	if closed != 300 {
		t.Errorf("%d of 300 connections claiming 1 MiB closed, want all", closed)
	}
	if held > idle+20<<20 {
		t.Errorf("RSS grew %.1f MB, more than 20 MB", float64(held-idle)/(1<<20))
	}
}
