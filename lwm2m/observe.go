package lwm2m

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"hash/maphash"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

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
	// pending is the Observe request the server sent on its own (see
	// observeAppData) while it waits for the answer; nil once answered or
	// given up.
	pending atomic.Pointer[pendingObserve]
}

// pendingObserve is an unanswered confirmable Observe request, sent again
// on a timer with the CoAP back-off (RFC 7252 §4.2) until a response with
// its token arrives or the retransmissions run out.
type pendingObserve struct {
	mid int32
	// mu guards the rest. Lock order: an entry's mu, then this one.
	mu      sync.Mutex
	timer   *time.Timer
	timeout time.Duration
	sent    int
}

// settle marks o's Observe request answered (or abandoned) and returns it,
// or nil if it already was.
func (o *observation) settle() *pendingObserve {
	p := o.pending.Load()
	if p == nil || !o.pending.CompareAndSwap(p, nil) {
		return nil
	}
	p.mu.Lock()
	p.timer.Stop()
	p.mu.Unlock()
	return p
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
	s.markDirty(e)
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
	o.settle()
	s.markDirty(e)
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
// 19, so its binary uplink reaches the platform. It sends the Observe and
// returns: the answer arrives as notifications do (handleNotification
// matches its token), and a timer retransmits the request until then.
// Through go-coap's client (one blocking exchange: a goroutine, channels,
// two handler maps) this Observe was a sixth of the server's CPU in a
// re-register storm of 100,000 devices. cc is the connection the client
// just registered on (the one reach would find again, unless it closed).
func (s *Server) observeAppData(e *entry, cc *udpClient.Conn) {
	o := s.startObservation(e, appDataPath)
	if o == nil {
		return
	}
	var err error
	if cc.Context().Err() != nil {
		cc, err = s.reach(e)
	}
	if err != nil {
		s.endObservation(o)
		s.log.Warn("lwm2m: observe failed", "device_id", e.deviceID, "path", o.path.String(), "err", err)
		return
	}
	p := &pendingObserve{mid: cc.GetMessageID(), timeout: s.firstAckTimeout(), sent: 1}
	// The timer exists before the request leaves: the answer may come
	// back before this function returns, and settle stops the timer.
	p.mu.Lock()
	p.timer = time.AfterFunc(p.timeout, func() { s.retransmitObserve(o, p) })
	o.pending.Store(p)
	p.mu.Unlock()
	s.stats.messagesOut.Add(1)
	if err := s.writeObserve(cc, o, p.mid); err != nil {
		s.log.Debug("lwm2m: sending observe", "device_id", e.deviceID, "err", err) // the timer sends it again
	}
}

// firstAckTimeout is ACK_TIMEOUT times a random factor in [1, 1.5), so a
// storm of registrations does not retransmit in lockstep.
func (s *Server) firstAckTimeout() time.Duration {
	return s.o.AckTimeout + time.Duration(mrand.Int64N(int64(s.o.AckTimeout)/2+1))
}

// retransmitObserve runs when o's Observe has waited p.timeout: it sends
// the request again with twice the timeout, or gives the observation up
// after MAX_RETRANSMIT (4) retransmissions.
func (s *Server) retransmitObserve(o *observation, p *pendingObserve) {
	if o.pending.Load() != p || o.e.removed.Load() || s.ctx.Err() != nil {
		return // answered, or the registration or the server ended
	}
	p.mu.Lock()
	sent := p.sent
	if sent <= maxRetransmit {
		if cc, err := s.reach(o.e); err == nil {
			if err := s.writeObserve(cc, o, p.mid); err != nil {
				s.log.Debug("lwm2m: resending observe", "device_id", o.e.deviceID, "err", err)
			}
		}
		p.sent++
		p.timeout *= 2
		p.timer.Reset(p.timeout)
	}
	p.mu.Unlock()
	if sent > maxRetransmit && o.pending.CompareAndSwap(p, nil) {
		s.endObservation(o)
		s.log.Warn("lwm2m: observe unanswered", "device_id", o.e.deviceID, "path", o.path.String(), "transmissions", sent)
	}
}

// maxRetransmit is CoAP's MAX_RETRANSMIT.
const maxRetransmit = 4

// writeObserve sends o's confirmable GET with Observe 0 and message ID mid.
func (s *Server) writeObserve(cc *udpClient.Conn, o *observation, mid int32) error {
	req := cc.AcquireMessage(s.ctx)
	defer cc.ReleaseMessage(req)
	req.SetCode(codes.GET)
	req.SetType(message.Confirmable)
	req.SetMessageID(mid)
	req.SetToken(message.Token(o.token))
	if err := req.SetPath(o.path.String()); err != nil {
		return err
	}
	req.SetObserve(0)
	return cc.Session().WriteMessage(req)
}

// firstAnswer takes the piggybacked answer to an Observe the server sent
// on its own: 2.05 keeps the observation (and its value, if any, is the
// first notification); anything else ends it.
func (s *Server) firstAnswer(o *observation, r *pool.Message) {
	if r.Code() != codes.Content {
		s.endObservation(o)
		s.log.Warn("lwm2m: observe refused", "device_id", o.e.deviceID, "path", o.path.String(), "code", r.Code().String())
		return
	}
	if r.Body() == nil {
		return
	}
	body, err := r.ReadBody()
	if err != nil || len(body) == 0 {
		return
	}
	ct := -1
	if mt, err := r.ContentFormat(); err == nil {
		ct = int(mt)
	}
	s.storeNotification(o.e, o.path, ct, body)
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
	if p := o.pending.Load(); p != nil {
		ack := r.Type() == message.Acknowledgement
		if (!ack || r.MessageID() == p.mid) && o.settle() == p {
			if ack {
				s.firstAnswer(o, r)
				return
			}
			// A separate response (RFC 7252 §5.2.2): it answers the
			// Observe and is the first notification, taken below.
		}
	}
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
	s.stats.messagesIn.Add(1)
	if path.Object == 5 {
		s.fw.notified(e, path, ct, body)
	}
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
