package main

import (
	"context"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
)

// TestCoAPBaselineObserves: with -observe the go-coap baseline observes
// /19/0/0 after every Register (each round a new client, as a rebooted
// device), and without it never does, so the two baselines differ by
// exactly that exchange.
func TestCoAPBaselineObserves(t *testing.T) {
	for _, observe := range []bool{false, true} {
		addr, stop, err := serveCoAP("127.0.0.1:0", observe)
		if err != nil {
			t.Fatal(err)
		}
		for round := range 2 {
			c, err := lwm2mclient.Dial(context.Background(), lwm2mclient.Config{Server: addr, Endpoint: "baseline-0",
				Lifetime: 300, RequestTimeout: 5 * time.Second})
			if err != nil {
				stop()
				t.Fatal(err)
			}
			if err := c.Register(context.Background()); err != nil {
				t.Fatalf("observe=%v, register %d: %v", observe, round, err)
			}
			deadline := time.Now().Add(3 * time.Second)
			for observe && !c.Observed("/19/0/0") && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if !observe {
				time.Sleep(200 * time.Millisecond) // room for an Observe that must not come
			}
			if got := c.Observed("/19/0/0"); got != observe {
				t.Errorf("observe=%v, register %d: /19/0/0 observed %v", observe, round, got)
			}
			c.Close()
		}
		stop()
	}
}
