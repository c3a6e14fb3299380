package registry

import (
	"errors"
	"strings"

	"github.com/iotgate/iotgate/registry/kv"
)

// downlinkMeta is a device's #dm record: the seq of its oldest kept
// downlink message and of its oldest PENDING one, so that the scans of
// its two lists seek past the entries deleted before them (Badger keeps
// their tombstones until a compaction; see messageMeta for what walking
// them cost the uplink list).
type downlinkMeta struct {
	// known is false when the device has no record yet.
	known bool
	// oldest and oldestHeld are "" when the list is empty.
	oldest, oldestHeld string
}

func readDownlinkMeta(rd Reader, dev string) (downlinkMeta, error) {
	v, err := rd.Get(downlinkMetaKey(dev))
	if errors.Is(err, kv.ErrNotFound) {
		return downlinkMeta{}, nil
	}
	if err != nil {
		return downlinkMeta{}, err
	}
	oldest, held, _ := strings.Cut(string(v), " ")
	return downlinkMeta{known: true, oldest: oldest, oldestHeld: held}, nil
}

func (m downlinkMeta) encode() []byte { return []byte(m.oldest + " " + m.oldestHeld) }

// from is where a scan of the list under prefix whose oldest entry is
// seq starts (nil: its start).
func (m downlinkMeta) from(prefix []byte, seq string) []byte {
	if !m.known || seq == "" {
		return nil
	}
	return append(append([]byte(nil), prefix...), seq...)
}

// noneHeld reports whether the record says the device holds no message.
func (m downlinkMeta) noneHeld() bool { return m.known && m.oldestHeld == "" }

// added notes a new message of seq, in both lists.
func (m *downlinkMeta) added(seq string) {
	m.known = true
	// The first, or older than the oldest (the clock went back: seqs
	// lead with the time).
	if m.oldest == "" || seq < m.oldest {
		m.oldest = seq
	}
	if m.oldestHeld == "" || seq < m.oldestHeld {
		m.oldestHeld = seq
	}
}
