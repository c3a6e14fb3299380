package lwm2m

import "time"

// workers runs request handling and post-response work on goroutines
// that outlive each job, instead of on go-coap's goroutine per client
// address or on a new goroutine per job.
//
// Why: go-coap matches responses by Token.Hash, whose hash/crc64 frame is
// 16 KiB, and our handlers reach the registry and Badger. Run on the
// per-address goroutine, that work grows each of the fleet's idle
// goroutines to 32 KiB of stack (shrunk only over several GCs, each
// copying stacks); run on a new goroutine per job, it pays that growth
// every time. A pooled worker grows once.
//
// The pool is elastic: a job goes to an idle worker, else to a new one,
// so a job never waits behind another (a handler may block on a client's
// answer). A worker idle for idle exits, and every worker once done is
// closed. Like the goroutines per job they replace, workers are not waited
// for at shutdown: their jobs end with the server's context.
type workers struct {
	jobs chan func()
	idle time.Duration
	done <-chan struct{}
}

func newWorkers(idle time.Duration, done <-chan struct{}) *workers {
	return &workers{jobs: make(chan func()), idle: idle, done: done}
}

// run starts fn on an idle worker or a new one.
func (w *workers) run(fn func()) {
	select {
	case w.jobs <- fn:
	default:
		go w.loop(fn)
	}
}

func (w *workers) loop(fn func()) {
	t := time.NewTimer(w.idle)
	defer t.Stop()
	for {
		fn()
		fn = nil // let the job's captures go while idle
		t.Reset(w.idle)
		select {
		case fn = <-w.jobs:
		case <-t.C:
			return
		case <-w.done:
			return
		}
	}
}
