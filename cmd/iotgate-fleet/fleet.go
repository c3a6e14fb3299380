package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// fleet runs the protocols one after another against one server.
type fleet struct {
	o     *options
	ids   identities
	rest  *restClient // nil without an API
	probe *probe
	prog  *progressLine
}

// runProtocol runs one protocol's whole cycle. It always disconnects
// what it connected, even when a phase fails or the run is interrupted.
func (f *fleet) runProtocol(ctx context.Context, proto string) (*ProtocolSummary, error) {
	o := f.o
	ps := &ProtocolSummary{Protocol: proto, Devices: o.n}
	if f.rest != nil && o.create {
		out, err := f.createDevices(ctx, proto)
		ps.Create = out
		if err != nil {
			return ps, err
		}
	}
	var fwd *forwarder
	if o.forward != "" {
		var err error
		if fwd, err = startForwarding(ctx, f.rest, o.forward, o.kafkaPartitions); err != nil {
			return ps, err
		}
		defer func() {
			if err := fwd.close(); err != nil {
				f.prog.note("%v", err)
			}
		}()
	}
	runners, err := f.startWorkers(proto)
	if err != nil {
		return ps, err
	}
	ps.Workers = len(runners)
	defer func() {
		for _, r := range runners {
			r.close()
		}
	}()

	if o.gc {
		if err := f.probe.collect(ctx); err != nil {
			f.prog.note("garbage collection before the first sample: %v", err)
		}
	}
	before := f.probe.sample(ctx)
	waitProfile := f.probe.cpuProfile(ctx, o.pprofSeconds, o.pprofDir, proto+"-connect.cpu.pprof")
	res, err := f.phase(ctx, runners, proto, "connect", phaseReq{Phase: "connect",
		Concurrency: o.concurrency, Rate: o.rate})
	waitProfile()
	ps.Connect, ps.Handshake, ps.Register = res.ops, res.handshake, res.register
	if err != nil {
		return ps, err
	}
	connected := ps.Connect.OK
	time.Sleep(o.settle)
	if o.gc {
		if err := f.probe.collect(ctx); err != nil {
			f.prog.note("garbage collection before the plateau sample: %v", err)
		}
	}
	ps.Memory = perDeviceOf(before, f.probe.sample(ctx), connected)
	if f.probe.debugURL != "" && o.pprofDir != "" {
		// What holds the memory: the heap, and the goroutines (whose
		// stacks the heap profile does not show).
		for _, kind := range []string{"heap", "goroutine"} {
			if err := f.probe.profile(ctx, kind, o.pprofDir, proto+"-plateau."+kind+".pprof"); err != nil {
				f.prog.note("%s profile: %v", kind, err)
			}
		}
	}

	holdStart := time.Now()
	ps.Hold, err = f.hold(ctx, runners, proto)
	if err != nil {
		return ps, err
	}
	if fwd != nil {
		holdEnd := holdStart.Add(time.Duration(ps.Hold.Seconds * float64(time.Second)))
		fwd.wait(ctx, int(ps.Hold.UplinksAcked), o.forwardWait)
		ps.Forward = fwd.recv.summary(o.forward, holdStart, holdEnd)
	}
	// Disconnects run even after an interruption.
	dctx := context.WithoutCancel(ctx)
	res, err = f.phase(dctx, runners, proto, "disconnect", phaseReq{Phase: "disconnect", Concurrency: o.concurrency, Graceful: o.graceful})
	ps.Disconnect = res.ops
	if err != nil {
		return ps, err
	}
	if o.reconnect && ctx.Err() == nil {
		if err := f.reconnectStorms(ctx, runners, proto, ps); err != nil {
			return ps, err
		}
	}
	if f.rest != nil && o.deleteAfter {
		ps.Delete = f.restPhase(dctx, proto, "delete", func(ctx context.Context, i int) error {
			return f.rest.deleteDevice(ctx, f.ids, proto, i)
		})
	}
	return ps, ctx.Err()
}

// reconnectStorms reconnects the whole fleet at once, -rounds times,
// each storm -settle after a disconnect and followed by one. Consecutive
// storms against one server process differ by tens of percent; the
// summary's Reconnect is the median storm by rate (with its handshake
// and register split), and ReconnectRounds has them all.
func (f *fleet) reconnectStorms(ctx context.Context, runners []runner, proto string, ps *ProtocolSummary) error {
	dctx := context.WithoutCancel(ctx)
	var storms []merged
	defer func() { f.summariseStorms(ps, storms) }() // also those before an error
	rounds := max(f.o.rounds, 1)
	for round := range rounds {
		if ctx.Err() != nil {
			break
		}
		// Every storm starts -settle after the disconnect before it, so
		// that none runs beside the tail of the server's disconnect work
		// and the storms are alike.
		time.Sleep(f.o.settle)
		waitProfile := func() {}
		if round == 0 { // the profile covers the first storm only
			waitProfile = f.probe.cpuProfile(ctx, f.o.pprofSeconds, f.o.pprofDir, proto+"-reconnect.cpu.pprof")
		}
		name := "reconnect"
		if rounds > 1 {
			name = fmt.Sprintf("reconnect %d/%d", round+1, rounds)
		}
		res, err := f.phase(ctx, runners, proto, name, phaseReq{Phase: "connect",
			Concurrency: f.o.concurrency, Rate: f.o.rate})
		waitProfile()
		storms = append(storms, res)
		if err != nil {
			return err
		}
		res, err = f.phase(dctx, runners, proto, "disconnect", phaseReq{Phase: "disconnect", Concurrency: f.o.concurrency, Graceful: f.o.graceful})
		ps.FinalDisconnect = res.ops
		if err != nil {
			return err
		}
	}
	return nil
}

func (f *fleet) summariseStorms(ps *ProtocolSummary, storms []merged) {
	if len(storms) == 0 {
		return
	}
	m := medianStorm(storms)
	ps.Reconnect, ps.ReconnectHandshake, ps.ReconnectRegister = m.ops, m.handshake, m.register
	if len(storms) > 1 {
		for _, s := range storms {
			ps.ReconnectRounds = append(ps.ReconnectRounds, s.ops)
		}
	}
}

// medianStorm is the storm of median rate (the lower of the middle two
// of an even count).
func medianStorm(storms []merged) merged {
	sorted := slices.Clone(storms)
	slices.SortStableFunc(sorted, func(a, b merged) int { return cmp.Compare(rateOf(a.ops), rateOf(b.ops)) })
	return sorted[(len(sorted)-1)/2]
}

func rateOf(o *Outcome) float64 {
	if o == nil {
		return 0
	}
	return o.PerSecond
}

// createDevices ensures the protocol's product and creates its devices.
func (f *fleet) createDevices(ctx context.Context, proto string) (*Outcome, error) {
	pt := "MQTT"
	if isLwM2M(proto) {
		pt = "CoAP"
	}
	if err := f.rest.ensureProduct(ctx, f.ids.product(proto), pt); err != nil {
		return nil, fmt.Errorf("create product %s: %w", f.ids.product(proto), err)
	}
	wait := f.probe.cpuProfile(ctx, f.o.pprofSeconds, f.o.pprofDir, proto+"-create.cpu.pprof")
	out := f.restPhase(ctx, proto, "create", func(ctx context.Context, i int) error {
		return f.rest.createDevice(ctx, f.ids, proto, i)
	})
	wait()
	if f.probe.debugURL != "" && f.o.pprofDir != "" {
		// alloc_space in this profile shows what the creations allocated.
		if err := f.probe.profile(ctx, "heap", f.o.pprofDir, proto+"-create.heap.pprof"); err != nil {
			f.prog.note("heap profile: %v", err)
		}
	}
	if out.Failed > 0 {
		return out, fmt.Errorf("%d of %d devices not created: %v", out.Failed, f.o.n, out.Failures)
	}
	return out, ctx.Err()
}

// restPhase runs one API call per device from -create-concurrency
// clients.
func (f *fleet) restPhase(ctx context.Context, proto, name string, fn func(context.Context, int) error) *Outcome {
	s := newSamples()
	var ok, failed atomic.Int64
	stop := f.prog.start(proto+" "+name, f.o.n, func() progress { return progress{OK: ok.Load(), Failed: failed.Load()} })
	c0, ops0, hasCommits := f.probe.commitStats(ctx)
	cpu := f.probe.startCPU()
	d := forEach(ctx, f.o.n, f.o.createConns, s, &ok, &failed, fn)
	use := cpu.per(int(ok.Load()))
	stop(progress{OK: ok.Load(), Failed: failed.Load()})
	out := s.outcome(d)
	out.CPU = use
	if c1, ops1, ok := f.probe.commitStats(ctx); ok && hasCommits && c1 > c0 {
		out.OpsPerCommit = round3(float64(ops1-ops0) / float64(c1-c0))
	}
	return &out
}

// startWorkers splits the protocol's devices over workers: in this
// process when one suffices, else in child processes.
func (f *fleet) startWorkers(proto string) ([]runner, error) {
	o := f.o
	n := o.workers
	if n <= 0 {
		n = (o.n + o.perProcess - 1) / o.perProcess
	}
	n = min(n, o.n)
	spread := o.spread
	if ip := net.ParseIP(hostOf(*o.targets[proto])); ip != nil && ip.To4() == nil {
		spread = 0 // an IPv6 target: 127.x.y.z sources cannot reach it
	}
	var runners []runner
	for k := range n {
		spec := workerSpec{Protocol: proto, Lo: k * o.n / n, Hi: (k + 1) * o.n / n, Target: *o.targets[proto],
			Prefix: o.prefix, Seed: o.seed, Timestamp: o.timestamp, Timeout: o.timeout, Keepalive: o.keepalive,
			Lifetime: o.lifetime, CAFile: o.caFile, QoS: o.qos, HandshakeOnly: o.handshakeOnly && proto == protoDTLS, Spread: spread,
			SharedSockets: o.sharedSockets}
		var r runner
		if n == 1 {
			w, err := newWorker(spec)
			if err != nil {
				return nil, err
			}
			r = localRunner{w}
		} else {
			rr, err := startRemote(spec)
			if err != nil {
				for _, r := range runners {
					r.close()
				}
				return nil, err
			}
			r = rr
		}
		runners = append(runners, r)
	}
	return runners, nil
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// merged is a phase's results over all workers.
type merged struct {
	ops, handshake, register *Outcome
	res                      []phaseResult
}

// phase runs one phase on every worker at once and merges the results;
// rates are over the wall time from the first worker's start to the last
// one's end.
func (f *fleet) phase(ctx context.Context, runners []runner, proto, name string, req phaseReq) (merged, error) {
	// Concurrency and rate are the whole fleet's; each worker takes its
	// share.
	w := len(runners)
	req.Concurrency = max(1, (req.Concurrency+w-1)/w)
	req.Rate /= float64(w)
	stop := f.prog.start(proto+" "+name, f.o.n, func() progress {
		var sum progress
		for _, r := range runners {
			p := r.progress()
			sum.OK += p.OK
			sum.Failed += p.Failed
			sum.Uplinks += p.Uplinks
			sum.Acked += p.Acked
			sum.Commands += p.Commands
		}
		return sum
	})
	results := make([]phaseResult, w)
	errs := make([]error, w)
	cpu := f.probe.startCPU()
	var wg sync.WaitGroup
	for k, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[k], errs[k] = r.run(ctx, req)
		}()
	}
	wg.Wait()
	var final progress
	for _, r := range results {
		if r.Ops != nil {
			ok, failed := r.Ops.counts()
			final.OK += int64(ok)
			final.Failed += int64(failed)
		}
		final.Uplinks += r.UplinksSent
		if r.UplinkAcks != nil {
			acked, _ := r.UplinkAcks.counts()
			final.Acked += int64(acked)
		}
		final.Commands += r.CommandsHandled
	}
	stop(final)
	m := merged{res: results}
	ops, hs, reg := newSamples(), newSamples(), newSamples()
	var start, end time.Time
	for _, r := range results {
		if r.Ops != nil {
			ops.merge(r.Ops)
		}
		if r.Handshake != nil {
			hs.merge(r.Handshake)
		}
		if r.Register != nil {
			reg.merge(r.Register)
		}
		if !r.Start.IsZero() && (start.IsZero() || r.Start.Before(start)) {
			start = r.Start
		}
		if r.End.After(end) {
			end = r.End
		}
	}
	d := end.Sub(start)
	o := ops.outcome(d)
	var client time.Duration
	for _, r := range results {
		if r.CPU < 0 || client < 0 {
			client = -1
			continue
		}
		client += r.CPU
	}
	o.CPU = cpu.perWithClient(o.OK, client)
	m.ops = &o
	if hn, _ := hs.counts(); hn > 0 {
		o := hs.outcome(d)
		m.handshake = &o
	}
	if rn, _ := reg.counts(); rn > 0 {
		o := reg.outcome(d)
		m.register = &o
	}
	return m, errors.Join(errs...)
}

// hold holds the fleet with uplinks while commands go to random devices.
func (f *fleet) hold(ctx context.Context, runners []runner, proto string) (*Hold, error) {
	o := f.o
	var cmdOut *Outcome
	var wg sync.WaitGroup
	if f.rest != nil && o.commands > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Commands go out during the hold, paced over its first half.
			cctx, cancel := context.WithTimeout(ctx, o.hold)
			defer cancel()
			s := newSamples()
			wait := pace(cctx, float64(o.commands)/(o.hold.Seconds()/2))
			var next atomic.Int64
			var cw sync.WaitGroup
			start := time.Now()
			for range max(1, o.commandConns) {
				cw.Add(1)
				go func() {
					defer cw.Done()
					for {
						k := int(next.Add(1) - 1)
						if k >= o.commands || !wait(k) {
							return
						}
						t := time.Now()
						err := f.rest.command(cctx, f.ids, proto, rand.IntN(o.n))
						s.record(t, err)
					}
				}()
			}
			cw.Wait()
			out := s.outcome(time.Since(start))
			cmdOut = &out
		}()
	}
	res, err := f.phase(ctx, runners, proto, "hold", phaseReq{Phase: "hold", Duration: o.hold, Interval: o.interval})
	wg.Wait()
	h := &Hold{Commands: cmdOut}
	acks := newSamples()
	var start, end time.Time
	for _, r := range res.res {
		h.UplinksSent += r.UplinksSent
		h.UplinksSkipped += r.UplinksSkipped
		h.CommandsHandled += r.CommandsHandled
		if r.UplinkAcks != nil {
			acks.merge(r.UplinkAcks)
		}
		if start.IsZero() || r.Start.Before(start) {
			start = r.Start
		}
		if r.End.After(end) {
			end = r.End
		}
	}
	// Rates are over the hold itself, not the wait for late acks.
	held := min(end.Sub(start), o.hold)
	h.Seconds = round3(held.Seconds())
	ao := acks.outcome(held)
	h.UplinksAcked = int64(ao.OK)
	h.AckLatency = ao.Latency
	if res.ops != nil && res.ops.Failed > 0 {
		h.UplinkFailures = res.ops.Failures
	}
	count := h.UplinksSent
	if !isLwM2M(proto) && o.qos > 0 {
		count = h.UplinksAcked
	}
	if held > 0 {
		h.PerSecond = round3(float64(count) / held.Seconds())
	}
	return h, err
}
