package registry

import (
	"context"
	"encoding/binary"
)

// EventBacklogCut bounds the size of a reader's backlog: for a reader of
// project's events at cursor, it returns the position up to which
// (inclusive) the backlog must be passed over so that what is left holds
// at most maxBytes of stored events (keys and values), the newest kept;
// 0 when the backlog is within the bound. It reads from the newest event
// back, at most maxBytes and one event more, so its cost is that of the
// bound, not of the stream.
func (r *Registry) EventBacklogCut(ctx context.Context, project string, cursor uint64, maxBytes int64) (uint64, error) {
	var cut uint64
	err := r.view(ctx, func(rd Reader) error {
		cut = 0
		var total int64
		prefix := prefixKey(famEvent, project)
		return rd.Scan(prefix, nil, true, func(k, v []byte) (bool, error) {
			pos := binary.BigEndian.Uint64(k[len(prefix):])
			if pos <= cursor {
				return false, nil
			}
			if total += int64(len(k) + len(v)); total > maxBytes {
				cut = pos
				return false, nil
			}
			return true, nil
		})
	})
	return cut, err
}
