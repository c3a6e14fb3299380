package lwm2m

import (
	"bytes"
	"context"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// coapSize counts what go-coap's UDP coder writes, for options whose
// deltas and lengths take 0, 1 and 2 extended bytes.
func TestCoAPSizeIsTheEncodedSize(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 300)
	cases := []struct {
		name  string
		build func(m *pool.Message)
	}{
		{"empty", func(m *pool.Message) {}},
		{"register", func(m *pool.Message) {
			m.SetPath("/rd")
			m.AddQuery("ep=urn:imei:860000000000001")
			m.AddQuery("lt=86400")
			m.AddQuery("lwm2m=1.1")
			m.SetContentFormat(message.AppLinkFormat)
			m.SetBody(bytes.NewReader([]byte("</1/0>,</3/0>,</19/0>,</19/1>")))
		}},
		{"long value and large delta", func(m *pool.Message) {
			m.SetOptionBytes(message.URIPath, long)             // length 300: 2 extended bytes
			m.SetOptionUint32(message.Size1, 1024)              // delta 60-11: 1 extended byte
			m.SetOptionBytes(message.OptionID(2048), []byte{1}) // delta > 268: 2 extended bytes
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := pool.NewMessage(context.Background())
			m.SetCode(codes.POST)
			m.SetMessageID(7)
			m.SetType(message.Confirmable)
			m.SetToken([]byte{1, 2, 3, 4})
			c.build(m)
			data, err := m.MarshalWithEncoder(coder.DefaultCoder)
			if err != nil {
				t.Fatal(err)
			}
			if got := coapSize(m); got != len(data) {
				t.Fatalf("coapSize %d, encoded %d bytes", got, len(data))
			}
		})
	}
}

// A message ID is remembered with its request's size for a lifetime,
// whether it sits in the inline slots or has spilled into the maps.
func TestRequestSizesRemembersEveryIDForALifetime(t *testing.T) {
	const lifetime = int64(udpClient.ExchangeLifetime)
	var rs requestSizes
	t0 := int64(1_000_000_000)
	// Ten requests: four inline, six spilled.
	for mid := range uint16(10) {
		if !rs.admit(mid, 100, t0+int64(mid)) {
			t.Fatalf("first request %d refused", mid)
		}
	}
	if rs.cur == nil || len(rs.cur) != 6 {
		t.Fatalf("spilled %v, want the six past the inline slots", rs.cur)
	}
	for mid := range uint16(10) {
		at := t0 + lifetime/2
		if !rs.admit(mid, 100, at) {
			t.Errorf("retransmission of %d refused", mid)
		}
		if rs.admit(mid, 99, at) {
			t.Errorf("shorter replay of %d admitted", mid)
		}
	}
	// A lifetime on, each ID is free again: the old entries are dead,
	// and the maps' generations turn.
	later := t0 + lifetime + 100
	for mid := range uint16(10) {
		if !rs.admit(mid, 10, later) {
			t.Errorf("ID %d refused a lifetime later", mid)
		}
		if rs.admit(mid, 9, later) {
			t.Errorf("shorter replay of the new %d admitted", mid)
		}
	}
	if inline := rs.recent[0].at; inline != later {
		t.Errorf("a dead inline slot was not reused (at %d)", inline)
	}
}
