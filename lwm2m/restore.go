package lwm2m

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/iotgate/iotgate/registry"
)

// restore loads the registrations this node had stored (on a single node,
// all of them) before its listeners start, so that a device's next
// Update after a restart finds its registration: NoSec clients are
// reached at their last address again; a DTLS client is reachable once
// it has handshaken and sent its Update (its session is not restored).
// Each restored device's session is resumed in the registry without an
// ONLINE event (Resumed). Registrations whose lifetime ran out while the
// server was down are restored too: the first sweep ends them, with their
// OFFLINE event and the deletion of their record.
func (s *Server) restore(ctx context.Context) (int, error) {
	var (
		n    int
		drop []registry.SessionRecord
		ferr error
	)
	err := s.o.Sessions.SessionRecords(ctx, func(rec registry.SessionRecord) bool {
		e, err := s.resume(ctx, rec, s.o.Sessions.Resumed)
		switch {
		case err == nil:
			s.store.add(e, rec.Expires)
			n++
		case errors.Is(err, registry.ErrFrozen), errors.Is(err, registry.ErrNotFound), errors.Is(err, errCorruptRegistration):
			s.log.Info("lwm2m: not restoring a registration", "device_id", rec.DeviceID, "registration", rec.Handle, "reason", err)
			drop = append(drop, rec)
		default:
			ferr = err
			return false
		}
		return true
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return n, fmt.Errorf("restore registrations: %w", err)
	}
	if len(drop) > 0 {
		if err := s.o.Sessions.SaveSessionRecords(ctx, nil, drop); err != nil {
			return n, fmt.Errorf("restore registrations: drop unusable records: %w", err)
		}
	}
	return n, nil
}

// resume rebuilds the entry of a stored registration, its session made
// by connect (Resumed at start, Connected when adopting another node's),
// and its observations, so notifications match them again. The caller
// adds it to the store.
func (s *Server) resume(ctx context.Context, rec registry.SessionRecord, connect func(context.Context, string) (registry.Session, error)) (*entry, error) {
	reg, obs, err := decodeRegistration(rec.Data)
	if err != nil {
		return nil, err
	}
	if reg.ID != rec.Handle || reg.DeviceID != rec.DeviceID {
		return nil, fmt.Errorf("%w: registration %s of %s stored under %s of %s", errCorruptRegistration, reg.ID, reg.DeviceID, rec.Handle, rec.DeviceID)
	}
	session, err := connect(ctx, rec.DeviceID)
	if err != nil {
		return nil, err
	}
	e := newEntry(reg, reg.Secure, session)
	e.regMID = -1 // no Register of this run to recognise a retransmission of
	e.savedExpiry.Store(rec.Expires.UnixNano())
	if !reg.Secure {
		if ap, err := netip.ParseAddrPort(reg.Addr); err == nil {
			ua := net.UDPAddrFromAddrPort(ap)
			e.addr.Store(ua)
			s.peers.put(addrPortOf(ua), netip.AddrPort{}, e)
		}
	}
	// Reachable as when it last spoke (queue mode: not before its next
	// uplink).
	e.lastUplink.Store(reg.UpdatedAt.UnixNano())
	for _, so := range obs {
		o := &observation{token: so.token, path: so.path, paths: so.paths, e: e}
		o.lastMID.Store(-1)
		e.observations[o.token] = o
		s.obs.put(o)
	}
	return e, nil
}

// adopt takes over a registration another node of the cluster made or
// last served, whose Update or De-register reached this node (a UDP load
// balancer moved the client): found by its id in the shared store and not
// expired, it becomes this node's (the device's session moves here, the
// other node is told to drop its copy) and is stored as this node's at
// once, so the other node's late deletion of it cannot remove it. Nil if
// there is no such registration.
//
// The client must be one that may change the registration (see
// mayChange) before anything moves; a refusal is returned as
// errForeignClient.
func (s *Server) adopt(ctx context.Context, id string, st *connState) (*entry, error) {
	rec, err := s.o.Sessions.SessionRecordByHandle(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !rec.Expires.After(s.now()) || rec.Node == s.o.Node {
		return nil, nil // ended, or this node's own and so ended here
	}
	reg, _, err := decodeRegistration(rec.Data)
	if err != nil {
		return nil, err
	}
	if msg := s.mayChange(ctx, st, reg.Secure, rec.DeviceID); msg != "" {
		return nil, &foreignClient{msg}
	}
	e, err := s.resume(ctx, rec, s.reg.Connected)
	if err != nil {
		if errors.Is(err, registry.ErrFrozen) || errors.Is(err, registry.ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	if old := s.store.add(e, rec.Expires); old != nil {
		s.retire(old, "replaced by an adopted registration", true)
	}
	if rec, ok := s.record(e); ok {
		if err := s.o.Sessions.SaveSessionRecords(ctx, []registry.SessionRecord{rec}, nil); err != nil {
			s.log.Warn("lwm2m: storing an adopted registration", "device_id", e.deviceID, "err", err)
			s.markDirty(e)
		} else {
			e.savedExpiry.Store(rec.Expires.UnixNano())
		}
	}
	s.log.Info("lwm2m: adopted a registration from another node", "device_id", e.deviceID, "registration", id, "from", rec.Node)
	return e, nil
}
