package lwm2mclient

import (
	"bytes"
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/iotgate/iotgate/lwm2m/format"
)

// TestBootstrapRetransmission: a bootstrap server's retransmitted
// request gets the same answer and is performed once; a write in plain
// text lands in the tree.
func TestBootstrapRetransmission(t *testing.T) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	answers := make(chan [][]byte, 1)
	go func() {
		buf := make([]byte, 2048)
		read := func() (message.Message, *net.UDPAddr) {
			_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, addr, err := srv.ReadFromUDP(buf)
			if err != nil {
				return message.Message{}, nil
			}
			m := message.Message{Options: make(message.Options, 0, 16)}
			_, _ = coder.DefaultCoder.Decode(buf[:n], &m)
			m.Token = append([]byte(nil), m.Token...)
			return m, addr
		}
		send := func(m message.Message, to *net.UDPAddr) {
			b := make([]byte, 256)
			n, _ := coder.DefaultCoder.Encode(m, b)
			_, _ = srv.WriteToUDP(b[:n], to)
		}
		req, peer := read()
		if peer == nil {
			answers <- nil
			return
		}
		send(message.Message{Code: codes.Changed, Type: message.Acknowledgement, MessageID: req.MessageID, Token: req.Token}, peer)
		write := message.Message{Code: codes.PUT, Type: message.Confirmable, MessageID: 7, Token: []byte{1}, Payload: []byte("coap://x:1")}
		write.Options = write.Options.Add(message.Option{ID: message.URIPath, Value: []byte("0")})
		write.Options = write.Options.Add(message.Option{ID: message.URIPath, Value: []byte("1")})
		write.Options = write.Options.Add(message.Option{ID: message.URIPath, Value: []byte("0")})
		write.Options = AddUint(write.Options, message.ContentFormat, uint32(format.FormatText))
		var got [][]byte
		for range 2 { // the second is a retransmission
			send(write, peer)
			_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := srv.ReadFromUDP(buf)
			if err != nil {
				break
			}
			got = append(got, append([]byte(nil), buf[:n]...))
		}
		finish := message.Message{Code: codes.POST, Type: message.Confirmable, MessageID: 8, Token: []byte{2}}
		finish.Options = finish.Options.Add(message.Option{ID: message.URIPath, Value: []byte("bs")})
		send(finish, peer)
		_, _ = read()
		answers <- got
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Bootstrap(ctx, srv.LocalAddr().String(), "ep-1")
	if err != nil {
		t.Fatal(err)
	}
	got := <-answers
	if len(got) != 2 || !bytes.Equal(got[0], got[1]) {
		t.Fatalf("answers to a retransmitted write: %x", got)
	}
	if want := []string{"PUT /0/1/0", "POST /bs"}; !slices.Equal(b.Ops, want) {
		t.Errorf("ops %v, want %v", b.Ops, want)
	}
	if uri, _, _, _ := b.Account(1); uri != "coap://x:1" {
		t.Errorf("written URI %q", uri)
	}
}
