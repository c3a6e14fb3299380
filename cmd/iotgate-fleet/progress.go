package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progressLine prints the running phase's counts: rewritten in place on
// a terminal, a line every two seconds otherwise (logs).
type progressLine struct {
	w     io.Writer
	tty   bool
	every time.Duration
	mu    sync.Mutex
}

func newProgress(w *os.File) *progressLine {
	p := &progressLine{w: w, every: 2 * time.Second}
	if fi, err := w.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		p.tty, p.every = true, 250*time.Millisecond
	}
	return p
}

// start prints the phase's progress until the returned stop is called
// with the phase's final counts.
func (p *progressLine) start(name string, total int, read func() progress) (stop func(final progress)) {
	begin := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	print := func(c progress, final bool) {
		el := time.Since(begin).Seconds()
		line := fmt.Sprintf("[%s] %d/%d ok, %d failed, %.0f/s, %.1fs", name, c.OK, total, c.Failed, float64(c.OK)/max(el, 1e-3), el)
		if c.Uplinks > 0 || c.Acked > 0 {
			line = fmt.Sprintf("[%s] uplinks %d sent, %d acked (%.0f/s), commands %d, %.1fs", name, c.Uplinks, c.Acked,
				float64(max(c.Acked, c.Uplinks))/max(el, 1e-3), c.Commands, el)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		switch {
		case p.tty && final:
			fmt.Fprintf(p.w, "\r\033[K%s\n", line)
		case p.tty:
			fmt.Fprintf(p.w, "\r\033[K%s", line)
		default:
			fmt.Fprintln(p.w, line)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(p.every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				print(read(), false)
			}
		}
	}()
	return func(final progress) {
		close(done)
		wg.Wait()
		print(final, true)
	}
}

// note prints a message between progress lines.
func (p *progressLine) note(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "iotgate-fleet: "+format+"\n", a...)
}
