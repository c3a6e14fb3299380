package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A minimal MQTT 3.1.1 device: CONNECT with username and password,
// QoS 0 and 1 PUBLISH both ways, PINGREQ and DISCONNECT. It is what the
// reference figures of the issue were measured with (a raw-socket client,
// one reader goroutine per connection), so the fleet's own cost stays
// small next to the server's: about one goroutine, a 256-byte read buffer
// and a socket per device.

// MQTT control packet types (high nibble of the first byte).
const (
	pkConnect    = 1
	pkConnack    = 2
	pkPublish    = 3
	pkPuback     = 4
	pkPingreq    = 12
	pkDisconnect = 14
)

// maxPacket bounds a packet the client reads (iotgate's own limit is
// 1 MiB of payload).
const maxPacket = 2 << 20

// connackError is a refused CONNECT.
type connackError struct{ code byte }

func (e *connackError) Error() string {
	names := map[byte]string{1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
		4: "bad username or password", 5: "not authorized"}
	return fmt.Sprintf("connack 0x%02x (%s)", e.code, names[e.code])
}

// mqttConfig is what one device connection needs.
type mqttConfig struct {
	addr      string      // server host:port
	local     net.IP      // source address; nil lets the kernel pick
	tls       *tls.Config // nil: plain TCP
	clientID  string
	username  string
	password  string
	keepalive uint16 // seconds
	timeout   time.Duration
}

// mqttConn is one device's connection.
type mqttConn struct {
	c        net.Conn
	br       *bufio.Reader
	deviceID string
	timeout  time.Duration

	wmu       sync.Mutex
	lastWrite atomic.Int64 // unix nanoseconds

	mu      sync.Mutex
	nextID  uint16
	pending map[uint16]time.Time // QoS 1 publishes awaiting PUBACK
	closed  bool

	// onAck receives the round trip of each acknowledged QoS 1 publish;
	// onCommand each command request (its request_id); both may be nil.
	onAck     func(time.Duration)
	onCommand func(requestID string)
	done      chan struct{} // closed when the read loop ends
}

// dialMQTT connects and authenticates; the returned connection reads in
// its own goroutine.
func dialMQTT(ctx context.Context, cfg mqttConfig, onAck func(time.Duration), onCommand func(string)) (*mqttConn, error) {
	d := net.Dialer{Timeout: cfg.timeout}
	if cfg.local != nil {
		d.LocalAddr = &net.TCPAddr{IP: cfg.local}
	}
	raw, err := d.DialContext(ctx, "tcp", cfg.addr)
	if err != nil {
		return nil, err
	}
	c := raw
	_ = c.SetDeadline(time.Now().Add(cfg.timeout))
	if cfg.tls != nil {
		tc := tls.Client(raw, cfg.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		c = tc
	}
	m := &mqttConn{c: c, br: bufio.NewReaderSize(c, 256), deviceID: cfg.username, timeout: cfg.timeout,
		pending: map[uint16]time.Time{}, onAck: onAck, onCommand: onCommand, done: make(chan struct{})}
	if err := m.write(connectPacket(cfg)); err != nil {
		c.Close()
		return nil, err
	}
	typ, body, err := m.readPacket()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connack: %w", err)
	}
	if typ>>4 != pkConnack || len(body) != 2 {
		c.Close()
		return nil, fmt.Errorf("connack: unexpected packet type %d", typ>>4)
	}
	if body[1] != 0 {
		c.Close()
		return nil, &connackError{code: body[1]}
	}
	_ = c.SetDeadline(time.Time{})
	go m.readLoop()
	return m, nil
}

func connectPacket(cfg mqttConfig) []byte {
	var vh []byte
	vh = appendString(vh, "MQTT")
	flags := byte(0x02) // clean session
	if cfg.username != "" {
		flags |= 0x80
	}
	if cfg.password != "" {
		flags |= 0x40
	}
	vh = append(vh, 4, flags, byte(cfg.keepalive>>8), byte(cfg.keepalive))
	vh = appendString(vh, cfg.clientID)
	if cfg.username != "" {
		vh = appendString(vh, cfg.username)
	}
	if cfg.password != "" {
		vh = appendString(vh, cfg.password)
	}
	return packet(pkConnect<<4, vh)
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// packet frames a body with its fixed header.
func packet(first byte, body []byte) []byte {
	out := make([]byte, 0, len(body)+5)
	out = append(out, first)
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

func (m *mqttConn) write(p []byte) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	_ = m.c.SetWriteDeadline(time.Now().Add(m.timeout))
	_, err := m.c.Write(p)
	m.lastWrite.Store(time.Now().UnixNano())
	return err
}

// readPacket reads one packet: its first byte and its body.
func (m *mqttConn) readPacket() (byte, []byte, error) {
	first, err := m.br.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, shift := 0, 0
	for i := 0; ; i++ {
		b, err := m.br.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		if shift += 7; i == 3 {
			return 0, nil, errors.New("malformed remaining length")
		}
	}
	if n > maxPacket {
		return 0, nil, fmt.Errorf("packet of %d bytes exceeds %d", n, maxPacket)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(m.br, body); err != nil {
		return 0, nil, err
	}
	return first, body, nil
}

func (m *mqttConn) readLoop() {
	defer close(m.done)
	for {
		first, body, err := m.readPacket()
		if err != nil {
			return
		}
		switch first >> 4 {
		case pkPuback:
			if len(body) >= 2 {
				m.acked(binary.BigEndian.Uint16(body))
			}
		case pkPublish:
			m.received(first, body)
		}
	}
}

func (m *mqttConn) acked(id uint16) {
	m.mu.Lock()
	sent, ok := m.pending[id]
	delete(m.pending, id)
	m.mu.Unlock()
	if ok && m.onAck != nil {
		m.onAck(time.Since(sent))
	}
}

// commandMarker introduces the request id in an IoTDA command topic,
// $oc/devices/{device_id}/sys/commands/request_id={request_id}.
const commandMarker = "/sys/commands/request_id="

// received handles a downlink: it acknowledges QoS 1 and answers a
// command with a successful response.
func (m *mqttConn) received(first byte, body []byte) {
	if len(body) < 2 {
		return
	}
	tl := int(binary.BigEndian.Uint16(body))
	if len(body) < 2+tl {
		return
	}
	topic := string(body[2 : 2+tl])
	if qos := (first >> 1) & 3; qos > 0 && len(body) >= 4+tl {
		_ = m.write(packet(pkPuback<<4, body[2+tl:4+tl]))
	}
	i := strings.Index(topic, commandMarker)
	if i < 0 {
		return
	}
	reqID := topic[i+len(commandMarker):]
	resp := "$oc/devices/" + m.deviceID + "/sys/commands/response/request_id=" + reqID
	_ = m.publish(resp, []byte(`{"result_code":0,"response_name":"COMMAND_RESPONSE","paras":{"result":"ok"}}`), false)
	if m.onCommand != nil {
		m.onCommand(reqID)
	}
}

// publish sends a PUBLISH; with qos1 its PUBACK reaches onAck.
func (m *mqttConn) publish(topic string, payload []byte, qos1 bool) error {
	vh := appendString(make([]byte, 0, 2+len(topic)+2+len(payload)), topic)
	first := byte(pkPublish << 4)
	if qos1 {
		m.mu.Lock()
		m.nextID++
		if m.nextID == 0 {
			m.nextID = 1
		}
		id := m.nextID
		m.pending[id] = time.Now()
		m.mu.Unlock()
		first |= 1 << 1
		vh = binary.BigEndian.AppendUint16(vh, id)
	}
	return m.write(packet(first, append(vh, payload...)))
}

// ping sends PINGREQ if nothing was written for half the keepalive.
func (m *mqttConn) pingIfIdle(keepalive time.Duration) error {
	if time.Since(time.Unix(0, m.lastWrite.Load())) < keepalive/2 {
		return nil
	}
	return m.write([]byte{pkPingreq << 4, 0})
}

// close sends DISCONNECT (when graceful) and closes the socket, then
// waits for the read loop to end.
func (m *mqttConn) close(graceful bool) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	var err error
	if graceful {
		err = m.write([]byte{pkDisconnect << 4, 0})
	}
	if cerr := m.c.Close(); err == nil {
		err = cerr
	}
	<-m.done
	return err
}
