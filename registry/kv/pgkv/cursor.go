package pgkv

import (
	"bytes"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// cursor yields the rows of a key range in scan order, fetching pages
// as it goes. The key and value it returns stay valid until its next
// call to next.
type cursor interface {
	next() (k, v []byte, ok bool, err error)
}

// pager is what cursors share: the page they hand out and its size.
type pager struct {
	query   querier
	reverse bool
	limit   int
	p       page
	i       int
	started bool
	done    bool // the last page fetched was the range's last
}

func (c *pager) nextRow(fetch func() error) ([]byte, []byte, bool, error) {
	for c.i >= len(c.p.rows) {
		if c.done {
			return nil, nil, false, nil
		}
		if !c.started {
			c.started, c.limit = true, firstPageRows
		} else {
			c.limit = nextLimit(c.limit, len(c.p.buf), max(1, len(c.p.rows)))
		}
		c.p.reset()
		c.i = 0
		if err := fetch(); err != nil {
			return nil, nil, false, err
		}
	}
	k, v := c.p.row(c.i)
	c.i++
	return k, v, true, nil
}

// kvCursor reads the kv table's rows in [lo, hi).
type kvCursor struct {
	pager
	lo, hi []byte
}

func (c *kvCursor) next() ([]byte, []byte, bool, error) { return c.nextRow(c.fetch) }

func (c *kvCursor) fetch() error {
	var rows pgx.Rows
	var err error
	switch {
	case c.hi != nil && !c.reverse:
		rows, err = c.query(sqlAsc, c.lo, c.hi, c.limit)
	case c.hi != nil:
		rows, err = c.query(sqlDesc, c.lo, c.hi, c.limit)
	case !c.reverse:
		rows, err = c.query(sqlAscOpen, c.lo, c.limit)
	default:
		rows, err = c.query(sqlDescOpen, c.lo, c.limit)
	}
	if err != nil {
		return err
	}
	for rows.Next() {
		var k, v pgtype.DriverBytes
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return err
		}
		c.p.add(k, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(c.p.rows) < c.limit {
		c.done = true
		return nil
	}
	last, _ := c.p.row(len(c.p.rows) - 1)
	if c.reverse {
		c.hi = bytes.Clone(last)
	} else {
		c.lo = append(bytes.Clone(last), 0)
	}
	return nil
}

// tableCursor reads a family table's rows whose keys are in [lo, hi).
type tableCursor struct {
	pager
	t      *table
	lo, hi []byte
	pins   [][]byte
	loC    *tupleCond
	hiC    *tupleCond
	key    []byte   // scratch
	dest   []any    // scan targets
	cells  [][]byte // the parts of the row being read
	lastOf [][]byte // the parts of the last row fetched, for the next page
}

func newTableCursor(q querier, t *table, prefix, lo, hi []byte, reverse bool) *tableCursor {
	c := &tableCursor{pager: pager{query: q, reverse: reverse}, t: t, lo: lo, hi: hi}
	if len(prefix) >= len(t.prefix) && len(t.fam.Parts) > 0 {
		c.pins = t.fam.Pinned(prefix)
	}
	c.loC, c.hiC = t.lowerCond(lo), t.upperCond(hi)
	n := len(t.fam.Parts)
	if t.value != "" {
		n++
	}
	c.dest = make([]any, n)
	for i := range c.dest {
		c.dest[i] = new(pgtype.DriverBytes)
	}
	c.cells = make([][]byte, len(t.fam.Parts))
	return c
}

func (c *tableCursor) next() ([]byte, []byte, bool, error) { return c.nextRow(c.fetch) }

func (c *tableCursor) fetch() error {
	sql := c.t.rangeSQL(len(c.pins), c.loC, c.hiC, c.reverse)
	args := c.t.partArgs(c.pins)
	for _, tc := range []*tupleCond{c.loC, c.hiC} {
		if tc != nil {
			args = append(args, c.t.partArgs(tc.vals)...)
		}
	}
	args = append(args, c.limit)
	rows, err := c.query(sql, args...)
	if err != nil {
		return err
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(c.dest...); err != nil {
			rows.Close()
			return err
		}
		n++
		for i := range c.cells {
			c.cells[i] = *c.dest[i].(*pgtype.DriverBytes)
		}
		var v []byte
		if c.t.value != "" {
			v = *c.dest[len(c.cells)].(*pgtype.DriverBytes)
		}
		c.key = c.t.fam.AppendKey(c.key[:0], c.cells)
		// The conditions can be looser than the range (see kv.Bound).
		if bytes.Compare(c.key, c.lo) >= 0 && (c.hi == nil || bytes.Compare(c.key, c.hi) < 0) {
			c.p.add(c.key, v)
		}
		c.lastOf = c.lastOf[:0]
		for _, cell := range c.cells {
			c.lastOf = append(c.lastOf, bytes.Clone(cell))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if n < c.limit || len(c.t.fam.Parts) == 0 {
		c.done = true
		return nil
	}
	// The next page starts past the last row fetched.
	if c.reverse {
		c.hiC = &tupleCond{"<", c.lastOf}
	} else {
		c.loC = &tupleCond{">", c.lastOf}
	}
	c.lastOf = nil
	return nil
}

// chainCursor reads family tables one after the other (their key ranges
// are disjoint and ordered), opening each when the one before ends.
type chainCursor struct {
	open []func() cursor
	cur  cursor
}

func (c *chainCursor) next() ([]byte, []byte, bool, error) {
	for {
		if c.cur == nil {
			if len(c.open) == 0 {
				return nil, nil, false, nil
			}
			c.cur, c.open = c.open[0](), c.open[1:]
		}
		k, v, ok, err := c.cur.next()
		if err != nil || ok {
			return k, v, ok, err
		}
		c.cur = nil
	}
}

// mergeCursor merges two cursors of disjoint keys in scan order. The
// row it hands out stays valid until its next call: the side it came
// from advances only then.
type mergeCursor struct {
	a, b           cursor
	reverse        bool
	ak, av, bk, bv []byte
	aok, bok       bool
	advA, advB     bool
}

func (m *mergeCursor) next() ([]byte, []byte, bool, error) {
	var err error
	if m.advA {
		m.advA = false
		if m.ak, m.av, m.aok, err = m.a.next(); err != nil {
			return nil, nil, false, err
		}
	}
	if m.advB {
		m.advB = false
		if m.bk, m.bv, m.bok, err = m.b.next(); err != nil {
			return nil, nil, false, err
		}
	}
	switch {
	case m.aok && (!m.bok || (bytes.Compare(m.ak, m.bk) < 0) != m.reverse):
		m.advA = true
		return m.ak, m.av, true, nil
	case m.bok:
		m.advB = true
		return m.bk, m.bv, true, nil
	}
	return nil, nil, false, nil
}

// scanCursor is the cursor of [lo, hi) over the family tables and the
// kv table. A range within one family's table reads that table alone.
func (l *layout) scanCursor(q querier, prefix, lo, hi []byte, reverse bool) cursor {
	if lo == nil {
		lo = []byte{} // not NULL
	}
	kvc := func() cursor { return &kvCursor{pager: pager{query: q, reverse: reverse}, lo: lo, hi: hi} }
	if l == nil {
		return kvc()
	}
	var open []func() cursor
	var within bool
	for _, t := range l.tables {
		if bytes.Compare(lo, t.end) >= 0 || (hi != nil && bytes.Compare(hi, []byte(t.prefix)) <= 0) {
			continue // disjoint
		}
		open = append(open, func() cursor { return newTableCursor(q, t, prefix, lo, hi, reverse) })
		within = len(t.fam.Parts) > 0 && bytes.Compare(lo, []byte(t.prefix)) >= 0 && hi != nil && bytes.Compare(hi, t.end) <= 0
	}
	if reverse {
		for i, j := 0, len(open)-1; i < j; i, j = i+1, j-1 {
			open[i], open[j] = open[j], open[i]
		}
	}
	switch {
	case len(open) == 1 && within:
		return open[0]()
	case len(open) == 0:
		return kvc()
	}
	return &mergeCursor{a: &chainCursor{open: open}, b: kvc(), reverse: reverse, advA: true, advB: true}
}

// each calls fn for the cursor's rows until fn returns false or an error.
func each(c cursor, fn func(k, v []byte) (bool, error)) error {
	for {
		k, v, ok, err := c.next()
		if err != nil || !ok {
			return err
		}
		if more, err := fn(k, v); err != nil || !more {
			return err
		}
	}
}
