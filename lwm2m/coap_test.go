package lwm2m_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/iotgate/iotgate/registry"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp"
)

// BenchmarkChattyAddress is one confirmable request (a GET the server
// answers 4.04) from a single client address, over and over. The cost
// of a request must not grow with how many that address sent before:
// every answer to a confirmable request is kept for EXCHANGE_LIFETIME
// (247 s) to answer its retransmissions, and go-coap's UDP server checks
// all of an address's kept answers at each datagram from it.
func BenchmarkChattyAddress(b *testing.B) {
	for _, before := range []int{0, 20000} {
		b.Run(fmt.Sprintf("sent_before=%d", before), func(b *testing.B) {
			f := newFixture(b, nil)
			c, err := udp.Dial(f.srv.UDPAddr().String())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			get := func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				resp, err := c.Get(ctx, "/nothing")
				if err != nil {
					b.Fatal(err)
				}
				if resp.Code() != codes.NotFound {
					b.Fatalf("answer %v", resp.Code())
				}
			}
			for range before {
				get()
			}
			b.ReportAllocs()
			for b.Loop() {
				get()
			}
		})
	}
}

// The cost of a request from one address does not grow with how many it
// sent before (go-coap's UDP server checked every kept answer of the
// address at each datagram: ×21 after 20,000 requests). Timed in chunks,
// compared by median, with a wide margin: the growth it guards against
// is an order of magnitude.
func TestChattyAddressStaysCheap(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 24,000 requests")
	}
	f := newFixture(t, nil)
	c, err := udp.Dial(f.srv.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	get := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.Get(ctx, "/nothing"); err != nil {
			t.Fatal(err)
		}
	}
	chunks := func() time.Duration {
		var d []time.Duration
		for range 10 {
			start := time.Now()
			for range 200 {
				get()
			}
			d = append(d, time.Since(start))
		}
		slices.Sort(d)
		return d[len(d)/2]
	}
	first := chunks()
	for range 20000 {
		get()
	}
	later := chunks()
	t.Logf("200 requests: %v at first, %v after 22,000", first, later)
	if later > 4*first {
		t.Fatalf("200 requests took %v after 22,000 from the address, %v at first", later, first)
	}
}

// A NoSec request whose first transmission is lost is sent again on
// time, also when idle connections are checked only every 10 s (a long
// NoSecIdleTimeout): the connection is checked every second while the
// request is in flight.
func TestNoSecRequestRetransmittedBetweenSweeps(t *testing.T) {
	f := newFixture(t, func(o *lwm2m.Options) {
		o.RequestTimeout = 8 * time.Second
		o.NoSecIdleTimeout = time.Minute
	})
	d := f.device("resend", false)
	c := f.client(lwm2mclient.Config{Endpoint: "resend"})
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the /19/0/0 observation", func() bool { return c.Observed("/19/0/0") })
	c.Sleep()
	read := f.command(d.DeviceID, "LwM2M", "READ", `{"path":"/3/0/0"}`, true)
	time.Sleep(500 * time.Millisecond)
	c.Wake()
	f.waitCommand(d.DeviceID, read, registry.AsyncSuccessful)
}
