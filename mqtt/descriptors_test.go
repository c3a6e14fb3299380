package mqtt

import (
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/iotgate/iotgate/fdbudget"
	"github.com/iotgate/iotgate/registry/guard"
)

// TestListenerDrawsOnDescriptorPool: with Options.Descriptors set, a
// connection over the pool is closed before admission or mochi sees it,
// and the descriptor of one that ends comes back for the next.
func TestListenerDrawsOnDescriptorPool(t *testing.T) {
	budget := fdbudget.New(100, nil, nil)
	pool := budget.Pool("mqtt", 1)
	logs := newRefusalLog(slog.New(slog.DiscardHandler), 10, 10)
	l := newTCPListener("mqtt", "127.0.0.1:0", nil,
		newAdmission(DefaultLimits(), guard.NewLocal(guard.Defaults()), logs, &counters{}))
	l.descriptors = pool
	if err := l.Init(slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	established := make(chan net.Conn)
	release := make(chan struct{})
	go l.Serve(func(_ string, c net.Conn) error {
		established <- c
		<-release // the session lasts until the test ends it
		return errors.New("session over")
	})
	defer l.Close(func(string) {})

	connect := []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0, 60, 0, 0}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", l.Address())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(connect); err != nil {
			t.Fatal(err)
		}
		return c
	}
	dial()
	select {
	case <-established:
	case <-time.After(5 * time.Second):
		t.Fatal("the first connection never reached mochi")
	}
	over := dial()
	_ = over.SetReadDeadline(time.Now().Add(5 * time.Second))
	var ne net.Error
	if _, err := over.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection over the pool not closed: %v", err)
	}
	select {
	case <-established:
		t.Fatal("a connection over the pool reached mochi")
	default:
	}
	if st := pool.Stats(); st.Refused != 1 || st.Open != 1 {
		t.Fatalf("pool %+v, want 1 open and 1 refused", st)
	}
	close(release) // the session ends; its descriptor comes back
	deadline := time.Now().Add(5 * time.Second)
	for pool.Stats().Open != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("descriptor not given back: %+v", pool.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	dial()
	select {
	case <-established:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection admitted once the pool had room again")
	}
}
