package natsbus_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/bus/natsbus"
	"github.com/iotgate/iotgate/registry/bus/natsbus/natstest"
)

func echo(_ context.Context, req []byte) []byte { return append([]byte("echo:"), req...) }

// callUnreachable checks that a Call to node fails fast as unreachable.
func callUnreachable(t *testing.T, from *natsbus.Bus, node string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := from.Call(ctx, node, []byte("x"))
	if !errors.Is(err, registry.ErrNodeUnreachable) {
		t.Fatalf("Call to %s: %v, want ErrNodeUnreachable", node, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Call to %s took %v to fail", node, d)
	}
}

// awaitCall waits until a Call to node is answered (its subscription may
// take a moment to reach every server after a reconnection).
func awaitCall(t *testing.T, from *natsbus.Bus, node string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		got, err := from.Call(ctx, node, []byte("ping"))
		cancel()
		if err == nil {
			if string(got) != "echo:ping" {
				t.Fatalf("Call to %s answered %q", node, got)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Call to %s after %v: %v", node, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCall(t *testing.T) {
	srv := natstest.Start(t)
	a := open(t, srv.URL(), "node-a")
	b := open(t, srv.URL(), "node-b")
	waitHealthy(t, a, true, 5*time.Second)
	waitHealthy(t, b, true, 5*time.Second)
	release := make(chan struct{})
	defer close(release)
	var handlerCtxErr sync.Map // request -> the handler's ctx.Err() when it gave up
	b.Serve(func(ctx context.Context, req []byte) []byte {
		switch {
		case bytes.HasPrefix(req, []byte("panic")):
			panic("handler bug")
		case bytes.HasPrefix(req, []byte("block")):
			select {
			case <-release:
			case <-ctx.Done():
				handlerCtxErr.Store(string(req), ctx.Err())
				time.Sleep(300 * time.Millisecond) // answer after the caller has gone
			}
			return []byte("released")
		case bytes.HasPrefix(req, []byte("sleep")):
			time.Sleep(300 * time.Millisecond)
		}
		return echo(ctx, req)
	})
	ctx := context.Background()
	awaitCall(t, a, "node-b", 5*time.Second)

	t.Run("round trip", func(t *testing.T) {
		for _, req := range [][]byte{{}, []byte("hello"), {0x00, 0xff, statusByteLookalike}, bytes.Repeat([]byte{0xab}, 100_000)} {
			got, err := a.Call(ctx, "node-b", req)
			if err != nil || !bytes.Equal(got, echo(ctx, req)) {
				t.Fatalf("Call(%d bytes) = %d bytes, %v", len(req), len(got), err)
			}
		}
	})
	t.Run("absent node", func(t *testing.T) {
		callUnreachable(t, a, "node-z")
		callUnreachable(t, a, "Not.A.Node")
	})
	t.Run("deadline", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := a.Call(cctx, "node-b", []byte("block-deadline"))
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, registry.ErrNodeUnreachable) {
			t.Fatalf("Call past its deadline: %v", err)
		}
		if d := time.Since(start); d > 700*time.Millisecond {
			t.Fatalf("a 200 ms Call returned after %v", d)
		}
		// The handler's context ended with the caller's deadline.
		deadline := time.Now().Add(2 * time.Second)
		for {
			if v, ok := handlerCtxErr.Load("block-deadline"); ok {
				if !errors.Is(v.(error), context.DeadlineExceeded) {
					t.Fatalf("handler's context ended with %v", v)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the handler's context did not end with the caller's deadline")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("panic", func(t *testing.T) {
		_, err := a.Call(ctx, "node-b", []byte("panic"))
		if !errors.Is(err, natsbus.ErrHandlerPanicked) || errors.Is(err, registry.ErrNodeUnreachable) {
			t.Fatalf("Call to a panicking handler: %v", err)
		}
		awaitCall(t, a, "node-b", time.Second) // and the node serves on
	})
}

// A byte that looks like a reply status must still come back as payload.
const statusByteLookalike = 0x01

// Slow requests are handled side by side: one does not hold up another.
func TestCallsRunConcurrently(t *testing.T) {
	srv := natstest.Start(t)
	a, b := open(t, srv.URL(), "node-a"), open(t, srv.URL(), "node-b")
	waitHealthy(t, b, true, 5*time.Second)
	b.Serve(func(ctx context.Context, req []byte) []byte {
		if string(req) == "slow" {
			time.Sleep(500 * time.Millisecond)
		}
		return req
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	awaitCallRaw(t, a, "node-b")

	const slow = 20
	start := time.Now()
	var wg sync.WaitGroup
	for range slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Call(ctx, "node-b", []byte("slow")); err != nil {
				t.Error(err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // the slow ones are in
	fastStart := time.Now()
	if got, err := a.Call(ctx, "node-b", []byte("fast")); err != nil || string(got) != "fast" {
		t.Fatalf("fast call: %q %v", got, err)
	}
	if d := time.Since(fastStart); d > 250*time.Millisecond {
		t.Fatalf("a fast call behind %d slow ones took %v", slow, d)
	}
	wg.Wait()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("%d calls of 500 ms took %v: not side by side", slow, d)
	}
}

func awaitCallRaw(t *testing.T, from *natsbus.Bus, node string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := from.Call(ctx, node, []byte("ping"))
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Call to %s: %v", node, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Beyond MaxInFlight requests in hand, a node refuses more at once with
// ErrOverloaded, which callers can tell from a payload and which counts
// as unreachable (not delivered).
func TestCallOverloaded(t *testing.T) {
	srv := natstest.Start(t)
	a := open(t, srv.URL(), "node-a")
	b := open(t, srv.URL(), "node-b", func(o *natsbus.Options) { o.MaxInFlight = 2 })
	waitHealthy(t, a, true, 5*time.Second)
	var entered sync.WaitGroup
	entered.Add(2)
	release := make(chan struct{})
	b.Serve(func(ctx context.Context, req []byte) []byte {
		if string(req) == "block" {
			entered.Done()
			<-release
		}
		return req
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 2 { // b's two slots
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := a.Call(ctx, "node-b", []byte("block")); err != nil || string(got) != "block" {
				t.Errorf("blocked call %d: %q %v", i, got, err)
			}
		}()
	}
	entered.Wait()
	_, err := a.Call(ctx, "node-b", []byte("one more"))
	if !errors.Is(err, natsbus.ErrOverloaded) || !errors.Is(err, registry.ErrNodeUnreachable) {
		t.Errorf("Call beyond MaxInFlight: %v", err)
	}
	close(release)
	wg.Wait()
	if got, err := a.Call(ctx, "node-b", []byte("again")); err != nil || string(got) != "again" {
		t.Fatalf("Call after the slots were freed: %q %v", got, err)
	}
}

// Close hands the queued notices to NATS and lets the requests in hand
// finish and answer before it closes the connection.
func TestCloseDrains(t *testing.T) {
	srv := natstest.Start(t)
	a := open(t, srv.URL(), "node-a")
	b := open(t, srv.URL(), "node-b")
	waitHealthy(t, a, true, 5*time.Second)
	waitHealthy(t, b, true, 5*time.Second)
	ra := subscribe(a)
	entered := make(chan struct{})
	b.Serve(func(ctx context.Context, req []byte) []byte {
		close(entered)
		time.Sleep(300 * time.Millisecond)
		return []byte("finished")
	})
	answer := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, err := a.Call(ctx, "node-b", nil)
		if err == nil && string(got) != "finished" {
			err = errors.New("answered " + string(got))
		}
		answer <- err
	}()
	<-entered
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = string(rune('a'+i%26)) + "-key"
		b.Publish(keys[i : i+1])
	}
	b.Close()
	if err := <-answer; err != nil {
		t.Fatalf("the request in hand at Close: %v", err)
	}
	ra.await(t, 5*time.Second, "b's last notices", func(got []string, _ int) bool { return len(got) == len(keys) })
	if err := b.Healthy(); err == nil {
		t.Fatal("a closed bus says it is healthy")
	}
	callUnreachable(t, a, "node-b")
	callUnreachable(t, b, "node-a")
}

// A Call that finds no subscriber for a moment (a server that has just
// started, before the routes carried the node's subscription) is sent
// again for a while, so a node that starts serving meanwhile answers it.
func TestCallWaitsOutAMomentWithoutResponders(t *testing.T) {
	srv := natstest.Start(t)
	a := open(t, srv.URL(), "node-a")
	b := open(t, srv.URL(), "node-b")
	waitHealthy(t, a, true, 5*time.Second)
	waitHealthy(t, b, true, 5*time.Second)
	go func() {
		time.Sleep(200 * time.Millisecond)
		b.Serve(echo)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := a.Call(ctx, "node-b", []byte("late"))
	if err != nil || string(got) != "echo:late" {
		t.Fatalf("Call to a node serving 200 ms later: %q, %v", got, err)
	}
}
