package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// runner drives one worker, in this process or in a child process.
type runner interface {
	// run runs a phase and returns what the worker measured.
	run(ctx context.Context, req phaseReq) (phaseResult, error)
	// progress is the worker's running count in the current phase.
	progress() progress
	// close disconnects what is left and ends the worker.
	close()
}

type localRunner struct{ w *worker }

func (r localRunner) run(ctx context.Context, req phaseReq) (phaseResult, error) {
	res := r.w.run(ctx, req)
	if res.Err != "" {
		return res, errors.New(res.Err)
	}
	return res, nil
}

func (r localRunner) progress() progress { return r.w.progress() }
func (r localRunner) close()             { r.w.shutdown() }

// The worker protocol, one JSON object a line. The coordinator writes the
// workerSpec, then one phaseReq per phase; the worker answers the spec
// with a workerMsg{Ready} and each phase with workerMsg{Progress} lines
// and a final workerMsg{Result}. End of input ends the worker.

type workerMsg struct {
	Ready    bool         `json:"ready,omitempty"`
	Error    string       `json:"error,omitempty"`
	Progress *progress    `json:"progress,omitempty"`
	Result   *phaseResult `json:"result,omitempty"`
}

// remoteRunner is a worker in a child process: this executable run as
// "iotgate-fleet worker".
type remoteRunner struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	results chan workerMsg
	mu      sync.Mutex
	last    progress
}

func startRemote(spec workerSpec) (*remoteRunner, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "worker")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &remoteRunner{cmd: cmd, in: in, results: make(chan workerMsg, 1)}
	go r.read(out)
	if _, err := in.Write(marshalLine(spec)); err != nil {
		r.close()
		return nil, fmt.Errorf("worker: %w", err)
	}
	m, ok := <-r.results
	if !ok || !m.Ready {
		r.close()
		return nil, fmt.Errorf("worker for devices %d-%d did not start: %s", spec.Lo, spec.Hi, m.Error)
	}
	return r, nil
}

func (r *remoteRunner) read(out io.Reader) {
	defer close(r.results)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 256<<20) // results carry every latency sample
	for sc.Scan() {
		var m workerMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			r.results <- workerMsg{Error: fmt.Sprintf("bad worker output: %v", err)}
			return
		}
		if m.Progress != nil {
			r.mu.Lock()
			r.last = *m.Progress
			r.mu.Unlock()
			continue
		}
		r.results <- m
	}
}

func (r *remoteRunner) run(ctx context.Context, req phaseReq) (phaseResult, error) {
	r.mu.Lock()
	r.last = progress{}
	r.mu.Unlock()
	if _, err := r.in.Write(marshalLine(req)); err != nil {
		return phaseResult{}, fmt.Errorf("worker: %w", err)
	}
	select {
	case m, ok := <-r.results:
		switch {
		case !ok:
			return phaseResult{}, errors.New("worker exited")
		case m.Error != "":
			return phaseResult{}, errors.New(m.Error)
		case m.Result == nil:
			return phaseResult{}, errors.New("worker sent no result")
		case m.Result.Err != "":
			return *m.Result, errors.New(m.Result.Err)
		}
		return *m.Result, nil
	case <-ctx.Done():
		return phaseResult{}, ctx.Err()
	}
}

func (r *remoteRunner) progress() progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

func (r *remoteRunner) close() {
	_ = r.in.Close() // the worker disconnects what is left and exits
	done := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
}

// workerMain is "iotgate-fleet worker": it serves the worker protocol on
// stdin and stdout.
func workerMain() error {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 16<<20)
	var outMu sync.Mutex
	send := func(m workerMsg) {
		outMu.Lock()
		defer outMu.Unlock()
		_, _ = os.Stdout.Write(marshalLine(m))
	}
	if !in.Scan() {
		return errors.New("worker: no spec on stdin")
	}
	var spec workerSpec
	if err := json.Unmarshal(in.Bytes(), &spec); err != nil {
		send(workerMsg{Error: err.Error()})
		return err
	}
	w, err := newWorker(spec)
	if err != nil {
		send(workerMsg{Error: err.Error()})
		return err
	}
	defer w.shutdown()
	send(workerMsg{Ready: true})
	ctx := context.Background()
	for in.Scan() {
		var req phaseReq
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			send(workerMsg{Error: err.Error()})
			return err
		}
		done := make(chan struct{})
		var ticking sync.WaitGroup
		ticking.Add(1)
		go func() {
			defer ticking.Done()
			t := time.NewTicker(250 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					p := w.progress()
					send(workerMsg{Progress: &p})
				}
			}
		}()
		res := w.run(ctx, req)
		close(done)
		ticking.Wait() // no progress line may follow the result
		send(workerMsg{Result: &res})
	}
	return in.Err()
}
