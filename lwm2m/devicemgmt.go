package lwm2m

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/registry"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// The device management client: the LwM2M operations the server performs
// on a registered client, each one CoAP exchange.

// Response is a client's answer to one request.
type Response struct {
	Code codes.Code
	// ContentFormat is -1 when the response names none.
	ContentFormat int
	Payload       []byte
	// Location is the Location-Path of a Create's 2.01, e.g. "/1024/1".
	Location string

	// separateMID is the message ID of a response that came in its own
	// confirmable or non-confirmable message (not piggybacked on the
	// ACK), -1 otherwise: an observation's first notification may answer
	// the Observe itself, and its retransmissions must be recognised.
	separateMID int32
}

// Errors of the device management client.
var (
	// ErrNotRegistered: the device has no live registration.
	ErrNotRegistered = fmt.Errorf("%w: the device has no LwM2M registration", registry.ErrNotConnected)
	// ErrAsleep: a queue-mode client is outside its wake window.
	ErrAsleep       = errors.New("the client is asleep (queue mode); the request waits for its next uplink")
	errNotObserved  = errors.New("the path is not observed")
	errUnreachable  = errors.New("the client's DTLS session is closed")
	errBadOperation = errors.New("invalid operation")
)

// reach returns the connection to send a request to e on.
func (s *Server) reach(e *entry) (*udpClient.Conn, error) {
	if e.removed.Load() {
		return nil, ErrNotRegistered
	}
	if e.secure {
		c := e.conn.Load()
		if c == nil || c.Context().Err() != nil {
			return nil, errUnreachable
		}
		return c, nil
	}
	addr := e.addr.Load()
	if addr == nil || s.udp == nil {
		return nil, errUnreachable
	}
	return s.udp.NewConn(addr)
}

// hold returns the connection to send a request to e on, marked busy so
// the idle monitor leaves it open until release is called.
func (s *Server) hold(e *entry) (cc *udpClient.Conn, release func(), err error) {
	for range 3 { // a NoSec connection closed meanwhile is made again
		if cc, err = s.reach(e); err != nil {
			return nil, nil, err
		}
		st := stateOf(cc)
		if st == nil {
			return cc, func() {}, nil
		}
		st.busy.Add(1)
		if cc.Context().Err() == nil {
			if st.secure { // only the DTLS server makes secure connections
				s.dtls.RequestStarted(cc)
			} else {
				s.udp.RequestStarted(cc)
			}
			return cc, func() { st.busy.Add(-1) }, nil
		}
		st.busy.Add(-1)
	}
	return nil, nil, errUnreachable
}

// exchange sends the request build makes on e's connection and returns
// the answer. A client that answers counts as awake.
func (s *Server) exchange(ctx context.Context, e *entry, build func(*udpClient.Conn) (*pool.Message, error)) (*Response, error) {
	cc, release, err := s.hold(e)
	if err != nil {
		return nil, err
	}
	defer release()
	req, err := build(cc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadOperation, err)
	}
	defer cc.ReleaseMessage(req)
	s.stats.messagesOut.Add(1)
	resp, err := cc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %v", registry.ErrTimeout, err)
		}
		return nil, err
	}
	defer cc.ReleaseMessage(resp)
	e.lastUplink.Store(s.now().UnixNano())
	out := &Response{Code: resp.Code(), ContentFormat: -1, separateMID: -1}
	if t := resp.Type(); t == message.Confirmable || t == message.NonConfirmable {
		out.separateMID = resp.MessageID()
	}
	if mt, err := resp.ContentFormat(); err == nil {
		out.ContentFormat = int(mt)
	}
	if resp.Body() != nil {
		if out.Payload, err = resp.ReadBody(); err != nil {
			return nil, err
		}
	}
	var loc strings.Builder
	for _, o := range resp.Options() {
		if o.ID == message.LocationPath {
			loc.WriteByte('/')
			loc.Write(o.Value)
		}
	}
	out.Location = loc.String()
	return out, nil
}

// entryFor returns the device's registration, awake.
func (s *Server) entryFor(deviceID string) (*entry, error) {
	e := s.store.device(deviceID)
	if e == nil {
		return nil, ErrNotRegistered
	}
	if !e.awake(s.now(), s.o.QueueWindow) {
		return nil, ErrAsleep
	}
	return e, nil
}

// Perform runs one LwM2M operation on a registered, awake client now.
// Applications reach it through asynchronous commands (service_id
// "LwM2M"), which also wait for sleeping clients; this is the direct path.
func (s *Server) Perform(ctx context.Context, deviceID string, op Operation) (*Response, error) {
	e, err := s.entryFor(deviceID)
	if err != nil {
		return nil, err
	}
	return s.perform(ctx, e, &op)
}

// perform sends op to e.
func (s *Server) perform(ctx context.Context, e *entry, op *Operation) (*Response, error) {
	if isComposite(op.Name) {
		return s.performComposite(ctx, e, op)
	}
	path := op.Path.String()
	if op.Accept < 0 && (op.Name == OpRead || op.Name == OpObserve) {
		op.Accept = int(e.reg.Load().readFormat(op.Path))
	}
	switch op.Name {
	case OpRead, OpDiscover:
		return s.exchange(ctx, e, func(cc *udpClient.Conn) (*pool.Message, error) {
			req, err := cc.NewGetRequest(ctx, path)
			if err != nil {
				return nil, err
			}
			switch {
			case op.Name == OpDiscover:
				req.SetAccept(message.AppLinkFormat)
			case op.Accept >= 0:
				req.SetAccept(message.MediaType(op.Accept))
			}
			return req, nil
		})
	case OpObserve:
		return s.observe(ctx, e, op.Path, op.Accept)
	case OpCancelObserve:
		return s.cancelObservation(ctx, e, op.Path)
	case OpWrite, OpCreate:
		ct, payload, err := op.body(e.reg.Load())
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errBadOperation, err)
		}
		return s.exchange(ctx, e, func(cc *udpClient.Conn) (*pool.Message, error) {
			body := bytes.NewReader(payload)
			if op.Name == OpWrite && !op.Partial {
				return cc.NewPutRequest(ctx, path, message.MediaType(ct), body)
			}
			return cc.NewPostRequest(ctx, path, message.MediaType(ct), body)
		})
	case OpExecute:
		return s.exchange(ctx, e, func(cc *udpClient.Conn) (*pool.Message, error) {
			if op.Args == "" {
				req, err := cc.NewPostRequest(ctx, path, message.TextPlain, nil)
				return req, err
			}
			return cc.NewPostRequest(ctx, path, message.TextPlain, bytes.NewReader([]byte(op.Args)))
		})
	case OpWriteAttributes:
		return s.exchange(ctx, e, func(cc *udpClient.Conn) (*pool.Message, error) {
			req, err := cc.NewPutRequest(ctx, path, message.TextPlain, nil)
			if err != nil {
				return nil, err
			}
			for _, q := range op.Attributes {
				req.AddQuery(q)
			}
			return req, nil
		})
	case OpDelete:
		return s.exchange(ctx, e, func(cc *udpClient.Conn) (*pool.Message, error) {
			return cc.NewDeleteRequest(ctx, path)
		})
	}
	return nil, fmt.Errorf("%w: %q", errBadOperation, op.Name)
}

// observe starts observing path on e and returns the first answer; the
// observation is kept only if that answer is 2.05.
func (s *Server) observe(ctx context.Context, e *entry, path format.Path, accept int) (*Response, error) {
	o := s.startObservation(e, path)
	if o == nil {
		return nil, ErrNotRegistered
	}
	resp, err := s.exchange(ctx, e, func(cc *udpClient.Conn) (*pool.Message, error) {
		req, err := cc.NewGetRequest(ctx, path.String())
		if err != nil {
			return nil, err
		}
		req.SetToken(message.Token(o.token))
		req.SetObserve(0)
		if accept >= 0 {
			req.SetAccept(message.MediaType(accept))
		}
		return req, nil
	})
	if err != nil || resp.Code != codes.Content {
		s.endObservation(o)
	} else if resp.separateMID >= 0 {
		o.lastMID.Store(resp.separateMID)
	}
	return resp, err
}
