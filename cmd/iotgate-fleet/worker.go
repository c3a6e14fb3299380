package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// workerSpec is one worker's share of a protocol's fleet: devices
// [Lo, Hi) and how to drive them. A worker runs in the coordinator's
// process or, for big fleets, in a process of its own (so that no
// process holds more sockets than its open-file limit allows).
type workerSpec struct {
	Protocol  string        `json:"protocol"`
	Lo        int           `json:"lo"`
	Hi        int           `json:"hi"`
	Target    string        `json:"target"` // the protocol's server address
	Prefix    string        `json:"prefix"`
	Seed      string        `json:"seed"`
	Timestamp string        `json:"timestamp"` // MQTT ClientId timestamp
	Timeout   time.Duration `json:"timeout"`
	Keepalive int           `json:"keepalive"` // MQTT, seconds
	Lifetime  int           `json:"lifetime"`  // LwM2M, seconds
	CAFile    string        `json:"ca_file"`   // MQTTS; empty: not verified
	QoS       int           `json:"qos"`       // MQTT uplinks
	// HandshakeOnly: DTLS handshake without LwM2M registration (for the
	// bare pion/dtls baseline).
	HandshakeOnly bool `json:"handshake_only"`
	// Spread is how many loopback source addresses the sockets use.
	Spread int `json:"spread"`
	// SharedSockets: NoSec LwM2M devices share a socket per Spread
	// devices, each sending from its own address (sharedDriver).
	SharedSockets bool `json:"shared_sockets,omitempty"`
}

// phaseReq asks a worker to run one phase.
type phaseReq struct {
	Phase string `json:"phase"` // connect | hold | disconnect
	// Connect: at most Concurrency connects in flight, at most Rate
	// started per second (0: as fast as they complete).
	Concurrency int     `json:"concurrency,omitempty"`
	Rate        float64 `json:"rate,omitempty"`
	// Hold: for Duration, each device sends an uplink every Interval
	// (0: none).
	Duration time.Duration `json:"duration,omitempty"`
	Interval time.Duration `json:"interval,omitempty"`
	// Disconnect: tell the server (MQTT DISCONNECT, LwM2M De-register)
	// or just drop the sockets, as an outage does.
	Graceful bool `json:"graceful,omitempty"`
}

// phaseResult is what a worker measured in one phase.
type phaseResult struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Ops: connects (for DTLS: handshake and registration), or
	// disconnects. Handshake is DTLS's handshake alone; Register the
	// LwM2M Register exchange alone.
	Ops       *samples `json:"ops"`
	Handshake *samples `json:"handshake,omitempty"`
	Register  *samples `json:"register,omitempty"`
	// Hold: uplinks written, and acknowledged (MQTT QoS 1) with their
	// round trip; commands the devices answered.
	UplinksSent     int64    `json:"uplinks_sent"`
	UplinksSkipped  int64    `json:"uplinks_skipped"` // LwM2M: not observed (yet)
	UplinkAcks      *samples `json:"uplink_acks,omitempty"`
	CommandsHandled int64    `json:"commands_handled"`
	// CPU is the worker's processor time in the phase (for a worker in
	// the coordinator's process, the whole process's).
	CPU time.Duration `json:"cpu_ns"`
	Err string        `json:"err,omitempty"`
}

// progress is a worker's running count in the current phase.
type progress struct {
	OK       int64 `json:"ok"`
	Failed   int64 `json:"failed"`
	Uplinks  int64 `json:"uplinks"`
	Acked    int64 `json:"acked"`
	Commands int64 `json:"commands"`
}

// session is one connected device.
type session interface {
	// uplink sends one data report; sent is false when the device may not
	// send yet (an LwM2M client the server does not observe).
	uplink(seq int64) (sent bool, err error)
	// keepalive sends what keeps an idle session alive, if due.
	keepalive() error
	// close ends the session, telling the server when graceful.
	close(ctx context.Context, graceful bool) error
}

// driver connects devices of one protocol.
type driver interface {
	// connect connects device i; timing records its handshake and
	// registration separately where the protocol has both.
	connect(ctx context.Context, i int, t *timing) (session, error)
	// close releases what the driver holds.
	close()
}

// timing receives the parts of one connect.
type timing struct {
	handshake, register *samples
}

// worker runs phases over its devices.
type worker struct {
	spec     workerSpec
	drv      driver
	sessions []session // by device index - Lo; nil when not connected

	ok, failed, uplinks, acked, commands atomic.Int64
	acks                                 atomic.Pointer[samples] // hold phase only
}

func newWorker(spec workerSpec) (*worker, error) {
	w := &worker{spec: spec, sessions: make([]session, spec.Hi-spec.Lo)}
	var err error
	switch spec.Protocol {
	case protoMQTT, protoMQTTS:
		w.drv, err = newMQTTDriver(spec, w.onAck, w.onCommand)
	case protoCoAP, protoDTLS:
		if spec.SharedSockets {
			w.drv, err = newSharedDriver(spec, w.onCommand)
			break
		}
		w.drv, err = newLwM2MDriver(spec)
	default:
		err = fmt.Errorf("unknown protocol %q", spec.Protocol)
	}
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (w *worker) onAck(d time.Duration) {
	w.acked.Add(1)
	if a := w.acks.Load(); a != nil {
		a.ok(d)
	}
}

func (w *worker) onCommand(string) { w.commands.Add(1) }

func (w *worker) progress() progress {
	return progress{OK: w.ok.Load(), Failed: w.failed.Load(), Uplinks: w.uplinks.Load(),
		Acked: w.acked.Load(), Commands: w.commands.Load()}
}

// run runs one phase to its end.
func (w *worker) run(ctx context.Context, req phaseReq) phaseResult {
	w.ok.Store(0)
	w.failed.Store(0)
	w.uplinks.Store(0)
	w.acked.Store(0)
	w.commands.Store(0)
	res := phaseResult{Start: time.Now(), Ops: newSamples()}
	cpu := selfCPUTime()
	switch req.Phase {
	case "connect":
		res.Handshake, res.Register = newSamples(), newSamples()
		w.connectAll(ctx, req, &res)
	case "hold":
		res.UplinkAcks = newSamples()
		w.acks.Store(res.UplinkAcks)
		w.hold(ctx, req, &res)
		// Let the last acknowledgements arrive before counting.
		time.Sleep(min(time.Second, req.Interval))
		w.acks.Store(nil)
		// A reader that loaded acks just before may still record into it.
		res.UplinkAcks = res.UplinkAcks.snapshot()
		res.UplinksSent, res.CommandsHandled = w.uplinks.Load(), w.commands.Load()
	case "disconnect":
		w.disconnectAll(ctx, req, &res)
	default:
		res.Err = fmt.Sprintf("unknown phase %q", req.Phase)
	}
	res.End = time.Now()
	if c := selfCPUTime(); c >= 0 && cpu >= 0 {
		res.CPU = c - cpu
	} else {
		res.CPU = -1
	}
	return res
}

// pace returns a function that blocks until the k-th start is due at
// rate per second (immediately when rate is 0).
func pace(ctx context.Context, rate float64) func(k int) bool {
	start := time.Now()
	return func(k int) bool {
		if rate <= 0 {
			return ctx.Err() == nil
		}
		due := start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return false
			}
		}
		return ctx.Err() == nil
	}
}

func (w *worker) connectAll(ctx context.Context, req phaseReq, res *phaseResult) {
	sem := make(chan struct{}, max(1, req.Concurrency))
	wait := pace(ctx, req.Rate)
	var wg sync.WaitGroup
	t := &timing{handshake: res.Handshake, register: res.Register}
	for k := range w.sessions {
		if w.sessions[k] != nil {
			continue // still connected from an earlier phase
		}
		if !wait(k) {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			start := time.Now()
			s, err := w.drv.connect(ctx, w.spec.Lo+k, t)
			res.Ops.record(start, err)
			if err != nil {
				w.failed.Add(1)
				return
			}
			w.sessions[k] = s
			w.ok.Add(1)
		}()
	}
	wg.Wait()
}

// hold keeps the sessions for req.Duration, spreading each device's
// uplinks evenly over the interval, and keeps idle sessions alive.
func (w *worker) hold(ctx context.Context, req phaseReq, res *phaseResult) {
	ctx, cancel := context.WithTimeout(ctx, req.Duration)
	defer cancel()
	var live []session
	for _, s := range w.sessions {
		if s != nil {
			live = append(live, s)
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // keepalives
		defer wg.Done()
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				for _, s := range live {
					_ = s.keepalive()
				}
			}
		}
	}()
	if req.Interval > 0 && len(live) > 0 {
		// Several senders, so that one slow write does not hold up the
		// others; each paces its share of the fleet over the interval.
		const senders = 8
		var skipped atomic.Int64
		for g := range senders {
			mine := live[g*len(live)/senders : (g+1)*len(live)/senders]
			if len(mine) == 0 {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				rate := float64(len(mine)) / req.Interval.Seconds()
				wait := pace(ctx, rate)
				// Start each sender at a random device, so the whole
				// fleet's uplinks are spread.
				off := rand.IntN(len(mine))
				for k := 0; wait(k); k++ {
					sent, err := mine[(off+k)%len(mine)].uplink(int64(k))
					switch {
					case err != nil:
						res.Ops.fail(err)
					case sent:
						w.uplinks.Add(1)
					default:
						skipped.Add(1)
					}
				}
			}()
		}
		defer func() { res.UplinksSkipped = skipped.Load() }()
	}
	wg.Wait()
}

func (w *worker) disconnectAll(ctx context.Context, req phaseReq, res *phaseResult) {
	sem := make(chan struct{}, max(1, req.Concurrency))
	var wg sync.WaitGroup
	for k, s := range w.sessions {
		if s == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			start := time.Now()
			cctx, cancel := context.WithTimeout(ctx, w.spec.Timeout)
			err := s.close(cctx, req.Graceful)
			cancel()
			res.Ops.record(start, err)
			if err != nil {
				w.failed.Add(1)
			} else {
				w.ok.Add(1)
			}
			w.sessions[k] = nil
		}()
	}
	wg.Wait()
}

// shutdown drops whatever is still connected and releases the driver.
func (w *worker) shutdown() {
	for k, s := range w.sessions {
		if s != nil {
			_ = s.close(context.Background(), false)
			w.sessions[k] = nil
		}
	}
	w.drv.close()
}

// marshalLine encodes v as one JSON line.
func marshalLine(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own plain structs are encoded
	}
	return append(b, '\n')
}
