package lwm2m

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/registry"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// appDataPath is /19/0/0, the Data resource of the first
// BinaryAppDataContainer: Huawei's NB-IoT uplink.
var appDataPath = format.NewPath(19, 0, 0)

// observation is one Observe the server holds on a client's resource.
type observation struct {
	token string
	path  format.Path
	e     *entry
	// lastMID is the message ID of the last notification (-1: none yet),
	// to drop retransmissions whichever connection they arrive on.
	lastMID atomic.Int32
}

// obsIndex finds an observation by token. Tokens are random, so a
// notification is matched in O(1) whichever connection it arrives on
// (a NoSec client's NAT binding may have changed since it registered).
type obsIndex struct {
	seed   maphash.Seed
	shards [32]struct {
		mu sync.Mutex
		m  map[string]*observation
	}
}

func newObsIndex() *obsIndex {
	x := &obsIndex{seed: maphash.MakeSeed()}
	for i := range x.shards {
		x.shards[i].m = make(map[string]*observation)
	}
	return x
}

func (x *obsIndex) shard(tok string) int {
	return int(maphash.String(x.seed, tok) % uint64(len(x.shards)))
}

func (x *obsIndex) put(o *observation) {
	sh := &x.shards[x.shard(o.token)]
	sh.mu.Lock()
	sh.m[o.token] = o
	sh.mu.Unlock()
}

func (x *obsIndex) get(tok []byte) *observation {
	sh := &x.shards[x.shard(string(tok))]
	sh.mu.Lock()
	o := sh.m[string(tok)] // no allocation: the compiler keys by the bytes
	sh.mu.Unlock()
	return o
}

func (x *obsIndex) remove(tok string) {
	sh := &x.shards[x.shard(tok)]
	sh.mu.Lock()
	delete(sh.m, tok)
	sh.mu.Unlock()
}

// startObservation records an observation of path before its request
// goes out, so no early notification is lost. It replaces an observation
// of the same path. It returns nil if the registration has ended.
func (s *Server) startObservation(e *entry, path format.Path) *observation {
	var tok [8]byte
	_, _ = rand.Read(tok[:])
	o := &observation{token: string(tok[:]), path: path, e: e}
	o.lastMID.Store(-1)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.removed.Load() {
		return nil
	}
	for t, old := range e.observations {
		if old.path == path {
			delete(e.observations, t)
			s.obs.remove(t)
		}
	}
	e.observations[o.token] = o
	s.obs.put(o)
	return o
}

// endObservation forgets o; false if it was already gone.
func (s *Server) endObservation(o *observation) bool {
	e := o.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.observations[o.token] != o {
		return false
	}
	delete(e.observations, o.token)
	s.obs.remove(o.token)
	return true
}

// observationOf returns e's observation of path, if any.
func (s *Server) observationOf(e *entry, path format.Path) *observation {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, o := range e.observations {
		if o.path == path {
			return o
		}
	}
	return nil
}

// observeAppData observes /19/0/0 after a client registered with object
// 19, so its binary uplink reaches the platform.
func (s *Server) observeAppData(e *entry) {
	ctx, cancel := context.WithTimeout(s.ctx, s.o.RequestTimeout)
	defer cancel()
	resp, err := s.observe(ctx, e, appDataPath, -1)
	if err != nil {
		s.log.Warn("lwm2m: observe /19/0/0 failed", "device_id", e.deviceID, "err", err)
		return
	}
	if resp.Code != codes.Content {
		s.log.Warn("lwm2m: observe /19/0/0 refused", "device_id", e.deviceID, "code", resp.Code.String())
		return
	}
	if len(resp.Payload) > 0 {
		s.storeNotification(e, appDataPath, resp.ContentFormat, resp.Payload)
	}
}

// handleNotification takes a response go-coap could not match to a
// pending request: a notification of one of our observations.
func (s *Server) handleNotification(cc *udpClient.Conn, r *pool.Message) {
	o := s.obs.get(r.Token())
	if o == nil {
		s.log.Debug("lwm2m: response with unknown token", "addr", cc.RemoteAddr().String(), "code", r.Code().String())
		return
	}
	e := o.e
	st := stateOf(cc)
	// A secure registration only hears notifications from its session.
	if st == nil || st.secure != e.secure || (e.secure && st.entry.Load() != e) {
		s.log.Debug("lwm2m: notification from a foreign connection", "device_id", e.deviceID, "addr", cc.RemoteAddr().String())
		return
	}
	s.wake(e)
	if r.Type() == message.Acknowledgement {
		// A piggybacked answer to an Observe we no longer wait for (it
		// timed out, or was sent again): the notifications that follow
		// are confirmable or not, never ACKs (RFC 7641 §4.5).
		return
	}
	if t := r.Type(); t == message.Confirmable || t == message.NonConfirmable {
		// A retransmission (our acknowledgement was lost): go-coap
		// acknowledges it again, it is not stored twice. go-coap's own
		// response cache does not see it when it arrives on a new
		// connection (see idleMonitor).
		if o.lastMID.Swap(r.MessageID()) == r.MessageID() {
			return
		}
	}
	if r.Code() != codes.Content && r.Code() != codes.Changed {
		// RFC 7641 §3.2: an error ends the observation.
		s.endObservation(o)
		return
	}
	body, err := r.ReadBody()
	if err != nil {
		return
	}
	ct := -1
	if mt, err := r.ContentFormat(); err == nil {
		ct = int(mt)
	}
	s.storeNotification(e, o.path, ct, body)
	if _, err := r.Observe(); err != nil {
		// A 2.05 without Observe is the last word on it (RFC 7641 §3.2).
		s.endObservation(o)
	}
}

// storeNotification keeps a notification as a device message: the bytes
// of /19/0/0 as sent (opaque values concatenated if the client wrapped
// them in TLV or SenML), anything else as the JSON of its decoded values,
// or raw when it cannot be decoded. The topic is the observed path.
func (s *Server) storeNotification(e *entry, path format.Path, ct int, body []byte) {
	payload := append([]byte(nil), body...)
	if ct >= 0 && uint16(ct) != format.FormatOpaque {
		if recs, err := format.Decode(uint16(ct), path, body, format.DefaultModel()); err == nil {
			if path == appDataPath {
				var data []byte
				for _, rec := range recs {
					data = append(data, rec.Value.Bytes()...)
				}
				payload = data
			} else if b, err := json.Marshal(recordViews(recs)); err == nil {
				payload = b
			}
		}
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.o.RequestTimeout)
	defer cancel()
	if err := s.reg.AddMessage(ctx, e.deviceID, registry.Message{Topic: path.String(), Payload: payload}); err != nil {
		s.log.Warn("lwm2m: storing notification failed", "device_id", e.deviceID, "path", path.String(), "err", err)
	}
}

// cancelObservation ends the observation of path, telling the client with
// a GET Observe=1 on the observation's token (RFC 7641 §3.6) when it can
// be reached; without that it stops at its next notification (we answer
// nothing it could match).
func (s *Server) cancelObservation(ctx context.Context, e *entry, path format.Path) (*Response, error) {
	o := s.observationOf(e, path)
	if o == nil {
		return nil, errNotObserved
	}
	s.endObservation(o)
	return s.exchange(ctx, e, func(cc *udpClient.Conn) (*pool.Message, error) {
		req, err := cc.NewGetRequest(ctx, path.String())
		if err != nil {
			return nil, err
		}
		req.SetToken(message.Token(o.token))
		req.SetObserve(1)
		return req, nil
	})
}
