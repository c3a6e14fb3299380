package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/iotgate/iotgate/registry/guard"
	"github.com/iotgate/iotgate/registry/kv"
)

// The ban list the nodes of a cluster share (guard.BanStore): one record
// per ban under bn/{kind}/{value}. Its writes are published like any
// other (Invalidator), and a node told of a change to the family calls
// its ban watchers, which reload the list (guard.Shared). Expired
// records are ignored when listed and deleted by the node holding the
// sweeps' lease, every BanSweepInterval.

var _ guard.BanStore = (*Registry)(nil)

// BanSweepInterval is how often expired bans are deleted from the store.
// They are ignored as soon as they expire; the sweep only frees space.
const BanSweepInterval = time.Minute

type banRecord struct {
	Identity string    `json:"identity,omitempty"`
	Prefix   string    `json:"prefix,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Source   string    `json:"source"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires,omitzero"` // zero: never
}

func banKey(t guard.Target) []byte {
	if t.Identity != "" {
		return key(famBan, "i", t.Identity)
	}
	return key(famBan, "a", t.Prefix.String())
}

func (b banRecord) live(now time.Time) bool { return b.Expires.IsZero() || b.Expires.After(now) }

func (b banRecord) ban() (guard.Ban, error) {
	out := guard.Ban{Reason: b.Reason, Source: guard.Source(b.Source), Created: b.Created, Expires: b.Expires}
	switch {
	case b.Identity != "" && b.Prefix == "":
		out.Identity = b.Identity
	case b.Identity == "" && b.Prefix != "":
		p, err := netip.ParsePrefix(b.Prefix)
		if err != nil {
			return out, fmt.Errorf("ban record: prefix: %w", err)
		}
		out.Prefix = p
	default:
		return out, errors.New("ban record: names no single target")
	}
	if out.Source != guard.SourceAuto && out.Source != guard.SourceManual {
		return out, fmt.Errorf("ban record: unknown source %q", b.Source)
	}
	return out, nil
}

func decodeBan(v []byte) (banRecord, error) {
	var b banRecord
	if err := json.Unmarshal(v, &b); err != nil {
		return b, fmt.Errorf("ban record: %w", err)
	}
	return b, nil
}

// PutBan stores b, in place of any ban of its target, except that an
// automatic ban never replaces a manual one in force.
func (r *Registry) PutBan(ctx context.Context, b guard.Ban) error {
	rec := banRecord{Identity: b.Identity, Reason: b.Reason, Source: string(b.Source),
		Created: b.Created.UTC(), Expires: b.Expires.UTC()}
	if b.Identity == "" {
		rec.Prefix = b.Prefix.String()
	}
	if b.Expires.IsZero() {
		rec.Expires = time.Time{}
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode ban: %w", err)
	}
	k := banKey(b.Target)
	err = r.write(ctx, func(w Writer) error {
		if b.Source == guard.SourceAuto {
			switch old, err := w.Get(k); {
			case err == nil:
				if cur, err := decodeBan(old); err == nil && cur.Source == string(guard.SourceManual) && cur.live(r.now()) {
					return nil
				}
			case !errors.Is(err, kv.ErrNotFound):
				return err
			}
		}
		return w.Set(k, v)
	})
	if err != nil {
		return fmt.Errorf("put ban %s: %w", b.Target, err)
	}
	return nil
}

// DeleteBan deletes t's ban; guard.ErrNotBanned if there is none in
// force (an expired record is deleted all the same).
func (r *Registry) DeleteBan(ctx context.Context, t guard.Target) error {
	k := banKey(t)
	live := false
	err := r.write(ctx, func(w Writer) error {
		live = false
		v, err := w.Get(k)
		if errors.Is(err, kv.ErrNotFound) {
			return guard.ErrNotBanned
		}
		if err != nil {
			return err
		}
		if b, err := decodeBan(v); err == nil {
			live = b.live(r.now())
		}
		return w.Delete(k)
	})
	switch {
	case errors.Is(err, guard.ErrNotBanned):
		return err
	case err != nil:
		return fmt.Errorf("delete ban %s: %w", t, err)
	case !live:
		return guard.ErrNotBanned
	}
	return nil
}

// ListBans lists the bans in force. A record that cannot be read is
// logged and skipped, so that one bad record does not stop every node
// from loading the others.
func (r *Registry) ListBans(ctx context.Context) ([]guard.Ban, error) {
	now := r.now()
	var out []guard.Ban
	err := r.view(ctx, func(rd Reader) error {
		out = out[:0]
		return rd.Scan(bansPrefix(), nil, false, func(k, v []byte) (bool, error) {
			rec, err := decodeBan(v)
			var b guard.Ban
			if err == nil {
				b, err = rec.ban()
			}
			if err != nil {
				r.log.Error("unreadable ban record skipped", "key", string(k), "err", err)
				return true, nil
			}
			if rec.live(now) {
				out = append(out, b)
			}
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list bans: %w", err)
	}
	return out, nil
}

// WatchBans has fn called when another node changed the ban list, and
// when notices of such changes may have been lost.
func (r *Registry) WatchBans(fn func()) {
	r.banMu.Lock()
	r.banWatchers = append(r.banWatchers, fn)
	r.banMu.Unlock()
}

func (r *Registry) bansChanged() {
	r.banMu.Lock()
	fns := r.banWatchers
	r.banMu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// isBanKey reports whether k is a key of the ban family.
func isBanKey(k string) bool {
	family, _, _ := cutPart(k)
	return family == famBan
}

// sweepBans deletes the expired ban records, at most every
// BanSweepInterval; it reports how many it deleted.
func (r *Registry) sweepBans(ctx context.Context) (int, error) {
	now := r.now()
	if last := r.banSwept.Load(); last != 0 && now.Sub(time.Unix(0, last)) < BanSweepInterval {
		return 0, nil
	}
	var due [][]byte
	err := r.view(ctx, func(rd Reader) error {
		due = due[:0]
		return rd.Scan(bansPrefix(), nil, false, func(k, v []byte) (bool, error) {
			if rec, err := decodeBan(v); err == nil && !rec.live(now) {
				due = append(due, append([]byte(nil), k...))
			}
			return true, nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("ban sweep: %w", err)
	}
	deleted := 0
	for len(due) > 0 {
		batch := due[:min(len(due), 256)]
		due = due[len(batch):]
		n := 0
		err := r.write(ctx, func(w Writer) error {
			n = 0
			for _, k := range batch {
				v, err := w.Get(k)
				if errors.Is(err, kv.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				// Re-check: the ban may have been renewed since the scan.
				if rec, err := decodeBan(v); err != nil || rec.live(now) {
					continue
				}
				if err := w.Delete(k); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return deleted, fmt.Errorf("ban sweep: %w", err)
		}
		deleted += n
	}
	r.banSwept.Store(now.UnixNano())
	return deleted, nil
}
