package lwm2mclient

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// TestMaxDatagram: a response larger than the client's read buffer is
// dropped (not decoded from a truncated read), one that fits is taken.
func TestMaxDatagram(t *testing.T) {
	const location = "rd"
	for _, tc := range []struct {
		name        string
		maxDatagram int
		payload     int // bytes of the 2.01's payload
		wantErr     error
	}{
		{name: "fits", maxDatagram: 256, payload: 100},
		{name: "exactly the limit", maxDatagram: 64, payload: 64 - 4 - 8 - 3 - 1}, // header, token, Location-Path "rd", payload marker,
		{name: "one byte over", maxDatagram: 64, payload: 64 - 4 - 8 - 3 - 1 + 1, wantErr: ErrTimeout},
		{name: "too large", maxDatagram: 256, payload: 400, wantErr: ErrTimeout},
		{name: "default 64 KiB", payload: 8000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			go answerRegister(srv, location, tc.payload)

			c, err := Dial(context.Background(), Config{Server: srv.LocalAddr().String(), Endpoint: "ep-1",
				RequestTimeout: 1500 * time.Millisecond, MaxDatagram: tc.maxDatagram})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Register(context.Background())
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Register: %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && c.Location() != "/"+location {
				t.Fatalf("location %q, want /%s", c.Location(), location)
			}
		})
	}
}

// answerRegister answers every request on srv with a piggybacked 2.01
// carrying a Location-Path and a payload of n bytes, until srv closes.
func answerRegister(srv *net.UDPConn, location string, n int) {
	buf := make([]byte, 2048)
	for {
		k, from, err := srv.ReadFromUDP(buf)
		if err != nil {
			return
		}
		req := message.Message{Options: make(message.Options, 0, 16)}
		if _, err := coder.DefaultCoder.Decode(buf[:k], &req); err != nil {
			continue
		}
		resp := message.Message{Type: message.Acknowledgement, MessageID: req.MessageID, Token: req.Token,
			Code: codes.Created, Payload: []byte(strings.Repeat("x", n))}
		resp.Options = resp.Options.Add(message.Option{ID: message.LocationPath, Value: []byte(location)})
		size, _ := coder.DefaultCoder.Size(resp)
		raw := make([]byte, size)
		if _, err := coder.DefaultCoder.Encode(resp, raw); err == nil {
			_, _ = srv.WriteToUDP(raw, from)
		}
	}
}
