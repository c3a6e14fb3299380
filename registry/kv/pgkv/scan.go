package pgkv

import (
	"bytes"
)

// Range queries on the primary key: [lo, hi), or [lo, ∞) when the range
// has no upper bound. A separate statement for each shape keeps the
// bounds in the index condition (an optional bound written as
// "$2 IS NULL OR key < $2" would leave the planner a filter, and a scan
// of a sparse prefix would walk the index past its end).
const (
	sqlBeginView   = `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`
	sqlBeginUpdate = `BEGIN ISOLATION LEVEL SERIALIZABLE`
	sqlCommit      = `COMMIT`
	sqlRollback    = `ROLLBACK`
	sqlGet         = `SELECT value FROM kv WHERE key = $1`
	sqlAsc         = `SELECT key, value FROM kv WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3`
	sqlAscOpen     = `SELECT key, value FROM kv WHERE key >= $1 ORDER BY key LIMIT $2`
	sqlDesc        = `SELECT key, value FROM kv WHERE key >= $1 AND key < $2 ORDER BY key DESC LIMIT $3`
	sqlDescOpen    = `SELECT key, value FROM kv WHERE key >= $1 ORDER BY key DESC LIMIT $2`
	sqlUpsert      = `INSERT INTO kv (key, value) SELECT k, v FROM unnest($1::bytea[], $2::bytea[]) AS w(k, v) ON CONFLICT (key) DO UPDATE SET value = excluded.value`
	sqlDeleteMany  = `DELETE FROM kv WHERE key = ANY($1::bytea[])`
	sqlMark        = `INSERT INTO kv_commits (id) VALUES ($1)`
	sqlUnmark      = `DELETE FROM kv_commits WHERE id = ANY($1::bytea[])`
	sqlFence       = `INSERT INTO kv_commits (id) VALUES ($1) ON CONFLICT (id) DO NOTHING`
	sqlOldMarks    = `DELETE FROM kv_commits WHERE at < now() - interval '1 hour'`
	firstPageRows  = 32      // most scans stop early: a page of a listing, a sweep's front
	maxPageRows    = 256     // a long scan fetches at most this many rows at once
	targetPageSize = 4 << 20 // and shrinks its pages when rows are large
)

// scanRange turns a Scan's prefix, from and direction into the key range
// [lo, hi) it covers (hi nil: no upper bound); ok is false when the range
// is empty.
func scanRange(prefix, from []byte, reverse bool) (lo, hi []byte, ok bool) {
	lo, hi = prefix, prefixEnd(prefix)
	if from != nil {
		if !reverse && bytes.Compare(from, lo) > 0 {
			lo = from
		}
		if reverse {
			// key <= from is key < from+"\x00", the next key in byte order.
			if next := append(append(make([]byte, 0, len(from)+1), from...), 0); hi == nil || bytes.Compare(next, hi) < 0 {
				hi = next
			}
		}
	}
	return lo, hi, hi == nil || bytes.Compare(lo, hi) < 0
}

// prefixEnd returns the smallest key greater than every key with the
// prefix, or nil if there is none (the prefix is empty or all 0xff).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// page holds the rows of one fetch, copied out of the driver's buffers so
// that fn may run queries (Get) on the same transaction while it visits
// them.
type page struct {
	buf  []byte
	rows [][4]int // key start, key end, value start, value end in buf
}

func (p *page) reset() { p.buf, p.rows = p.buf[:0], p.rows[:0] }

func (p *page) add(k, v []byte) {
	ks := len(p.buf)
	p.buf = append(p.buf, k...)
	vs := len(p.buf)
	p.buf = append(p.buf, v...)
	p.rows = append(p.rows, [4]int{ks, vs, vs, len(p.buf)})
}

func (p *page) row(i int) (k, v []byte) {
	r := p.rows[i]
	return p.buf[r[0]:r[1]:r[1]], p.buf[r[2]:r[3]:r[3]]
}

// nextLimit doubles the page up to maxPageRows, and sizes it to about
// targetPageSize when rows are large.
func nextLimit(limit, bytes, rows int) int {
	limit = min(2*limit, maxPageRows)
	if per := bytes / rows; per > 0 {
		limit = min(limit, max(1, targetPageSize/per))
	}
	return limit
}

// mergeScan calls fn for the rows of db merged with the keys own (an
// Update's staged writes in the scan's range, in scan order; value gives
// each one's value, nil for a delete), as if the writes were stored.
func mergeScan(db func(func(k, v []byte) (bool, error)) error, own []string, value func(string) []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	i := 0
	// emit yields the staged keys that come before k in scan order (all
	// of them when all).
	emit := func(k []byte, all bool) (bool, error) {
		for ; i < len(own); i++ {
			o := own[i]
			if !all && ((!reverse && o >= string(k)) || (reverse && o <= string(k))) {
				break
			}
			if v := value(o); v != nil {
				if more, err := fn([]byte(o), v); err != nil || !more {
					return false, err
				}
			}
		}
		return true, nil
	}
	stopped := false
	err := db(func(k, v []byte) (bool, error) {
		more, err := emit(k, false)
		if err != nil || !more {
			stopped = true
			return false, err
		}
		if i < len(own) && own[i] == string(k) {
			i++
			if v = value(string(k)); v == nil {
				return true, nil // deleted by the Update
			}
		}
		more, err = fn(k, v)
		if err != nil || !more {
			stopped = true
		}
		return more, err
	})
	if err != nil || stopped {
		return err
	}
	_, err = emit(nil, true)
	return err
}
