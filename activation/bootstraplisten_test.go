package activation

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/iotgate/iotgate/fdbudget"
)

// TestBootstrapDrawsOnDescriptorPool: with Descriptors set, a
// connection over the pool is closed at accept, and one that ends gives
// its descriptor back.
func TestBootstrapDrawsOnDescriptorPool(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	pool := fdbudget.New(10, nil, nil).Pool("mqtt", 1)
	b, err := NewBootstrapMQTT(BootstrapOptions{Centre: &fakeCentre{}, Listen: addr, Descriptors: pool})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())

	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	waitOpen := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for pool.Stats().Open != want {
			if time.Now().After(deadline) {
				t.Fatalf("pool %+v, want %d open", pool.Stats(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitOpen(1)
	over, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	_ = over.SetReadDeadline(time.Now().Add(5 * time.Second))
	var ne net.Error
	if _, err := over.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection over the pool not closed: %v", err)
	}
	if st := pool.Stats(); st.Refused != 1 {
		t.Fatalf("pool %+v, want 1 refused", st)
	}
	first.Close()
	waitOpen(0)
}
