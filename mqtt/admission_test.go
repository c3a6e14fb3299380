package mqtt

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestReadConnect(t *testing.T) {
	connect := append([]byte{0x10, 0x82, 0x01}, bytes.Repeat([]byte{7}, 130)...) // remaining length 130
	tests := []struct {
		name  string
		input []byte
		chunk int // bytes per write; 0: all at once
		max   int
		want  []byte // what mochi must read; nil: an error
		err   error
	}{
		{"whole", connect, 0, 8192, connect, nil},
		{"one byte at a time", connect, 1, 8192, connect, nil},
		{"with the next packet", append(append([]byte{}, connect...), 0xc0, 0), 0, 8192, append(append([]byte{}, connect...), 0xc0, 0), nil},
		{"exactly the limit", connect, 7, len(connect), connect, nil},
		{"over the limit", connect, 0, len(connect) - 1, nil, errConnectTooLarge},
		{"1 MiB claimed", []byte{0x10, 0x80, 0x80, 0x40}, 0, 8192, nil, errConnectTooLarge},
		{"not a CONNECT", []byte{0x30, 0x02, 0, 0}, 0, 8192, nil, errNotConnect},
		{"malformed length", []byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x01}, 0, 1 << 30, nil, nil},
		{"cut short", connect[:50], 0, 8192, nil, io.ErrUnexpectedEOF},
	}
	var bufs connectBuffers // shared: each case may get the last one's buffer
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client := net.Pipe()
			defer server.Close()
			go func() {
				defer client.Close()
				in := tt.input
				for len(in) > 0 {
					n := len(in)
					if tt.chunk > 0 {
						n = min(n, tt.chunk)
					}
					if _, err := client.Write(in[:n]); err != nil {
						return
					}
					in = in[n:]
				}
			}()
			_ = server.SetDeadline(time.Now().Add(5 * time.Second))
			c, err := readConnect(server, tt.max, &bufs)
			if tt.want == nil {
				if err == nil || (tt.err != nil && !errors.Is(err, tt.err)) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(tt.want))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("mochi reads % x, want % x", got, tt.want)
			}
		})
	}
}

// TestConnectBuffersComeBackOnlyOnceRead: a connection's buffer goes back
// to the pool only when mochi has read all of it, so the next connection
// cannot overwrite bytes not yet read.
func TestConnectBuffersComeBackOnlyOnceRead(t *testing.T) {
	var bufs connectBuffers
	connect := []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0, 60, 0, 0}
	prime := func() *primedConn {
		server, client := net.Pipe()
		t.Cleanup(func() { server.Close(); client.Close() })
		go func() { _, _ = client.Write(connect) }()
		c, err := readConnect(server, 8192, &bufs)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*primedConn)
	}
	first := prime()
	array := &first.full[:1][0]
	half := make([]byte, 5)
	if _, err := io.ReadFull(first, half); err != nil {
		t.Fatal(err)
	}
	if second := prime(); &second.full[:1][0] == array {
		t.Fatal("a buffer still being read was handed to another connection")
	}
	rest := make([]byte, len(connect)-len(half))
	if _, err := io.ReadFull(first, rest); err != nil {
		t.Fatal(err)
	}
	if got := append(half, rest...); !bytes.Equal(got, connect) {
		t.Fatalf("read % x, want % x", got, connect)
	}
	if first.full != nil {
		t.Fatal("a read buffer is still held")
	}
	// sync.Pool may drop what it holds (at a collection), so only check
	// that a buffer it hands out is empty and of the first size.
	if b := bufs.get(); len(b) != 0 || cap(b) != firstRead {
		t.Fatalf("got len %d cap %d, want 0 and %d", len(b), cap(b), firstRead)
	}
}
