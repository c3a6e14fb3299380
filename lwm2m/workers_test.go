package lwm2m

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestLwM2MWorkersNeverQueueAndAreReused(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	w := newWorkers(time.Minute, done)
	// A job blocked on a client's answer does not hold up the next one.
	block := make(chan struct{})
	var started sync.WaitGroup
	started.Add(10)
	for range 10 {
		w.run(func() { started.Done(); <-block })
	}
	waited := make(chan struct{})
	go func() { started.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("jobs waited behind blocked ones")
	}
	close(block)
	// Sequential jobs run on the idle workers: no goroutine per job.
	time.Sleep(50 * time.Millisecond) // let the ten become idle
	before := runtime.NumGoroutine()
	for range 100 {
		ran := make(chan struct{})
		w.run(func() { close(ran) })
		<-ran
	}
	if after := runtime.NumGoroutine(); after > before+1 {
		t.Fatalf("%d goroutines after 100 sequential jobs, %d before", after, before)
	}
}
