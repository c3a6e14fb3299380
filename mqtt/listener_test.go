package mqtt

import (
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/guard"
)

// TestListenerLeavesTCPKeepaliveOff: the MQTT keepalive (and the
// CONNECT deadline before it) find dead peers, so accepted sockets skip
// the kernel's keepalive and the system calls that set it up.
func TestListenerLeavesTCPKeepaliveOff(t *testing.T) {
	logs := newRefusalLog(slog.New(slog.DiscardHandler), 10, 10)
	l := newTCPListener("mqtt", "127.0.0.1:0", nil,
		newAdmission(DefaultLimits(), guard.NewLocal(guard.Defaults()), logs, &counters{}))
	if err := l.Init(slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 1)
	go l.Serve(func(_ string, c net.Conn) error {
		tc := c.(*primedConn).Conn.(*net.TCPConn)
		raw, err := tc.SyscallConn()
		if err != nil {
			t.Error(err)
			return err
		}
		v := -1
		if err := raw.Control(func(fd uintptr) {
			v, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		}); err != nil {
			t.Error(err)
		}
		got <- v
		return nil
	})
	defer l.Close(func(string) {})

	c, err := net.Dial("tcp", l.Address())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The smallest CONNECT the admission reads whole: MQTT 3.1.1, no
	// flags, keepalive 60, empty client id.
	if _, err := c.Write([]byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0, 60, 0, 0}); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-got:
		if v != 0 {
			t.Fatalf("SO_KEEPALIVE = %d on an accepted connection, want 0", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the connection never reached mochi")
	}
	_, _ = io.Copy(io.Discard, c)
}
