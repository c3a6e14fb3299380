package lwm2m

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/registry"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// The Send operation (LwM2M 1.1 TS Core, Information Reporting): a
// registered client POSTs values to /dp on its own, as a SenML JSON (110)
// or SenML CBOR (112) pack of full paths. The values are kept as one
// device message (topic /dp) and as reported properties of the service
// "LwM2M" (one property per resource path), in one transaction, before
// the 2.04 that tells the client they were taken.
//
// Refusals: 4.00 for a client with no registration here (as Leshan
// answers; the specification leaves it to the server), a
// malformed pack or a record that is not a resource value; 4.04 for a
// value of an object instance the registration does not list (TS Core
// Send: "Reported Object was not registered"); 4.15 for a content
// format other than SenML JSON or CBOR (RFC 7252 §5.9.2.10); 4.13 for a
// pack larger than maxSendPayload.

// sendPath is the Send operation's resource ("dp": data push).
const sendPath = "/dp"

// maxSendPayload bounds a Send's pack (after Block1 reassembly): a day of
// an NB-IoT meter's readings is a few KiB.
const maxSendPayload = 64 * 1024

// relativeTimeLimit is SenML's bound below which a time is relative to
// now (RFC 8428 §4.5.3: 2^28 seconds).
const relativeTimeLimit = 1 << 28

// serveSend handles POST /dp.
func (s *Server) serveSend(w mux.ResponseWriter, r *mux.Message) {
	if r.Code() != codes.POST {
		respond(w, codes.MethodNotAllowed, "Send is POST /dp")
		return
	}
	cc, ok := w.Conn().(*udpClient.Conn)
	if !ok {
		respond(w, codes.InternalServerError, "")
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.o.RequestTimeout)
	defer cancel()
	e := s.sender(ctx, cc)
	if e == nil {
		respond(w, codes.BadRequest, "no registration for this client; Register first")
		return
	}
	s.wake(e) // an uplink: commands waiting for a queue-mode client go out
	code, diag := s.takeSend(ctx, e, r)
	respond(w, code, diag)
}

// takeSend checks and keeps one Send of e's client and returns the answer.
func (s *Server) takeSend(ctx context.Context, e *entry, r *mux.Message) (codes.Code, string) {
	mt, err := r.ContentFormat()
	if err != nil || (uint16(mt) != format.FormatSenMLJSON && uint16(mt) != format.FormatSenMLCBOR) {
		return codes.UnsupportedMediaType, "Send carries SenML JSON (110) or SenML CBOR (112)"
	}
	if r.Body() == nil {
		return codes.BadRequest, "empty Send"
	}
	if n, err := r.BodySize(); err == nil && n > maxSendPayload {
		return codes.RequestEntityTooLarge, fmt.Sprintf("Send larger than %d bytes", maxSendPayload)
	}
	body, err := r.ReadBody()
	if err != nil {
		return codes.BadRequest, "unreadable payload"
	}
	recs, err := format.Decode(uint16(mt), format.NewPath(), body, format.DefaultModel())
	if err != nil {
		return codes.BadRequest, "malformed SenML: " + err.Error()
	}
	if len(recs) == 0 {
		return codes.BadRequest, "empty Send"
	}
	reg := e.reg.Load()
	for _, rec := range recs {
		if rec.Path.Depth() < 3 || rec.Value.Kind() == format.KindNone {
			return codes.BadRequest, "record " + rec.Path.String() + " is not a resource value"
		}
		if !registeredInstance(reg.Objects, rec.Path) {
			return codes.NotFound, "object instance " + format.NewPath(uint16(rec.Path.Object), uint16(rec.Path.Instance)).String() + " is not in the registration"
		}
	}
	now := s.now()
	msg, reports, err := sendReport(recs, now)
	if err != nil {
		return codes.BadRequest, err.Error()
	}
	s.stats.messagesIn.Add(1)
	if err := s.reg.ReportMessageAndProperties(ctx, e.deviceID, msg, reports); err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return codes.BadRequest, "no registration for this client; Register first"
		}
		s.log.Warn("lwm2m: storing a Send failed", "device_id", e.deviceID, "err", err)
		return codes.InternalServerError, ""
	}
	return codes.Changed, ""
}

// sender is the registration of the client that sent on cc: over DTLS the
// one its session carries, else its PSK identity's device's; over NoSec
// the one last registered or updated from its address.
func (s *Server) sender(ctx context.Context, cc *udpClient.Conn) *entry {
	st := stateOf(cc)
	if st == nil {
		return nil
	}
	if st.secure {
		if e := st.entry.Load(); e != nil && !e.removed.Load() {
			return e
		}
		id, err := s.identityDevice(ctx, st)
		if err != nil {
			return nil
		}
		if e := s.store.device(id); e != nil && e.secure {
			return e
		}
		return nil
	}
	ap := addrPortOf(cc.RemoteAddr())
	e := s.peers.get(ap)
	if e == nil || e.secure || e.removed.Load() || addrPortOf(e.addr.Load()) != ap || s.store.get(e.id) != e {
		return nil
	}
	return e
}

// registeredInstance reports whether the object instance of p is among
// the registration's links (an object link without instances lists
// none, as Leshan reads it).
func registeredInstance(links []ObjectLink, p format.Path) bool {
	for _, l := range links {
		if l.Path.Object == p.Object && l.Path.Instance == p.Instance {
			return true
		}
	}
	return false
}

// sendView is a value of a Send as kept in the device message: its
// time resolved to Unix seconds.
type sendView struct {
	Path  string       `json:"path"`
	Kind  string       `json:"kind"`
	Value format.Value `json:"value"`
	Time  float64      `json:"time,omitempty"`
}

// sendReport turns a Send's records into its device message (the values
// in order, with their times) and its property reports: one per distinct
// time, oldest first, so that the shadow keeps each resource's latest
// value and the time of the latest report.
func sendReport(recs []format.Record, now time.Time) (registry.Message, []registry.ServiceProperties, error) {
	views := make([]sendView, len(recs))
	byTime := map[int64]map[string]json.RawMessage{} // by Unix ns
	for i, rec := range recs {
		at := now
		if rec.Time != 0 {
			var err error
			if at, err = senmlTime(rec.Time, now); err != nil {
				return registry.Message{}, nil, fmt.Errorf("record %s: %v", rec.Path, err)
			}
		}
		views[i] = sendView{Path: rec.Path.String(), Kind: rec.Value.Kind().String(), Value: rec.Value}
		if rec.Time != 0 {
			views[i].Time = float64(at.UnixNano()) / 1e9
		}
		v, err := json.Marshal(rec.Value)
		if err != nil {
			return registry.Message{}, nil, fmt.Errorf("record %s: %v", rec.Path, err)
		}
		props := byTime[at.UnixNano()]
		if props == nil {
			props = map[string]json.RawMessage{}
			byTime[at.UnixNano()] = props
		}
		props[rec.Path.String()] = v
	}
	payload, err := json.Marshal(views)
	if err != nil {
		return registry.Message{}, nil, fmt.Errorf("encoding the values: %v", err)
	}
	reports := make([]registry.ServiceProperties, 0, len(byTime))
	for at, props := range byTime {
		reports = append(reports, registry.ServiceProperties{ServiceID: ServiceLwM2M, Properties: props, EventTime: time.Unix(0, at).UTC()})
	}
	sort.Slice(reports, func(i, j int) bool { return reports[i].EventTime.Before(reports[j].EventTime) })
	return registry.Message{Topic: sendPath, Payload: payload, Time: now.UTC()}, reports, nil
}

// maxSenMLTime is the last second of year 9999: a later time is no
// reading's.
const maxSenMLTime = 253402300799

// senmlTime resolves a SenML time (bt+t): Unix seconds, or, below 2^28,
// seconds relative to now (RFC 8428 §4.5.3).
func senmlTime(t float64, now time.Time) (time.Time, error) {
	switch {
	case math.Abs(t) < relativeTimeLimit:
		return now.Add(time.Duration(t * float64(time.Second))), nil
	case t < 0 || t > maxSenMLTime:
		return time.Time{}, fmt.Errorf("time %v is out of range", t)
	}
	sec, frac := math.Modf(t)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}
