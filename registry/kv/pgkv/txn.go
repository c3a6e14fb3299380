package pgkv

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// querier runs one statement in a reader's transaction.
type querier func(sql string, args ...any) (pgx.Rows, error)

// reader reads a View's snapshot, or (in a batch) the Update
// transaction's.
type reader struct {
	ctx  context.Context
	conn *pgxpool.Conn
	// begin starts the reader's transaction, sent with its first
	// statement (the snapshot is taken at the first statement after it).
	begin string
	begun bool
	// view: ctx is the caller's, and its end is not the database's fault.
	view bool
	lay  *layout
	err  error // the first failed read, classified
}

var _ kv.Reader = (*reader)(nil)

func (r *reader) fail(what string, err error) error {
	if r.err == nil {
		if r.view && r.ctx.Err() != nil {
			r.err = fmt.Errorf("pgkv %s: %w", what, r.ctx.Err())
		} else {
			r.err = dbError(what, err)
		}
	}
	return r.err
}

// query runs a statement in the reader's transaction. The first one goes
// out in one round trip with the BEGIN, and a reader that reads nothing
// begins nothing.
func (r *reader) query(sql string, args ...any) (pgx.Rows, error) {
	if r.begun {
		return r.conn.Query(r.ctx, sql, args...)
	}
	r.begun = true
	var b pgx.Batch
	b.Queue(r.begin)
	b.Queue(sql, args...)
	br := r.conn.SendBatch(r.ctx, &b)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// batchRows are the rows of a batch's last statement: closing them ends
// the batch.
type batchRows struct {
	pgx.Rows
	br  pgx.BatchResults
	err error
}

func (b *batchRows) Close() {
	b.Rows.Close()
	if b.br != nil {
		b.err = b.br.Close()
		b.br = nil
	}
}

func (b *batchRows) Err() error {
	if err := b.Rows.Err(); err != nil {
		return err
	}
	return b.err
}

func (r *reader) Get(key []byte) ([]byte, error) {
	v, found, err := getDB(r.query, r.lay, key)
	if le := (*kv.LayoutError)(nil); errors.As(err, &le) {
		return nil, err // nothing was sent: the transaction goes on
	}
	if err != nil {
		return nil, r.fail("get", err)
	}
	if !found {
		return nil, kv.ErrNotFound
	}
	return v, nil
}

func (r *reader) Scan(prefix, from []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	lo, hi, ok := scanRange(prefix, from, reverse)
	if !ok {
		return nil
	}
	var fnErr error
	err := each(r.lay.scanCursor(r.query, prefix, lo, hi, reverse), func(k, v []byte) (bool, error) {
		more, err := fn(k, v)
		fnErr = err
		return more, err
	})
	if err != nil && err != fnErr {
		return r.fail("scan", err)
	}
	return err
}

// getDB reads one key, from its family's table or from kv; the value is
// the caller's (never nil when found). A key its family cannot hold is a
// *kv.LayoutError, and nothing is sent.
func getDB(query querier, lay *layout, key []byte) ([]byte, bool, error) {
	var rows pgx.Rows
	var err error
	if t := lay.route(key); t != nil {
		parts, perr := t.fam.Split(key)
		if perr != nil {
			return nil, false, fmt.Errorf("pgkv: %w", perr)
		}
		rows, err = query(t.get, t.partArgs(parts)...)
	} else {
		rows, err = query(sqlGet, key)
	}
	if err != nil {
		return nil, false, err
	}
	var v []byte
	found := rows.Next()
	if found {
		err = rows.Scan(&v)
	}
	rows.Close()
	if err == nil {
		err = rows.Err()
	}
	if err != nil || !found {
		return nil, false, err
	}
	if v == nil {
		v = []byte{}
	}
	return v, true, nil
}

// batch is the state of one group-commit transaction: what its Updates
// read from the database and what those that succeeded wrote.
type batch struct {
	reader
	// read caches the database's answers: the transaction's snapshot is
	// fixed and its own writes are held in writes until the end, so a key
	// read once reads the same again (hot keys such as counters are read
	// once per batch).
	read   map[string]cached
	writes map[string][]byte // nil: delete
	order  []string          // keys of writes, in the order first written
	size   int               // bytes of keys and values in writes, about
	hooks  []func()
}

type cached struct {
	v     []byte
	found bool
}

func newBatch(ctx context.Context, conn *pgxpool.Conn, lay *layout) *batch {
	return &batch{
		reader: reader{ctx: ctx, conn: conn, begin: sqlBeginUpdate, lay: lay},
		read:   make(map[string]cached),
		writes: make(map[string][]byte),
	}
}

// get reads key as the batch's writes so far leave it; the value is
// shared (callers copy it).
func (b *batch) get(key []byte) ([]byte, bool, error) {
	if v, ok := b.writes[string(key)]; ok {
		return v, v != nil, nil
	}
	if c, ok := b.read[string(key)]; ok {
		return c.v, c.found, nil
	}
	v, found, err := getDB(b.query, b.lay, key)
	if le := (*kv.LayoutError)(nil); errors.As(err, &le) {
		return nil, false, err
	}
	if err != nil {
		return nil, false, b.fail("get", err)
	}
	b.read[string(key)] = cached{v, found}
	return v, found, nil
}

// keep adds the writes and hooks of an Update whose fn succeeded.
func (b *batch) keep(t *txn) {
	for _, k := range t.keys {
		if _, ok := b.writes[k]; !ok {
			b.order = append(b.order, k)
		}
		b.writes[k] = t.values[k]
	}
	b.size += t.size
	b.hooks = append(b.hooks, t.hooks...)
}

// queueEnd queues what ends the batch's transaction, in one round trip:
// its BEGIN if no read sent it, the batch's writes (one upsert, one
// delete), its commit marker and the deletion of the markers spent by
// earlier batches when it wrote, and COMMIT. It reports whether the batch
// wrote; a batch that neither read nor wrote queues nothing.
func (b *batch) queueEnd(q *pgx.Batch, marker []byte, spent [][]byte) (wrote bool) {
	var setK, setV, delK [][]byte
	var perTable []writes // by table index, for a fixed statement order
	if b.lay != nil {
		perTable = make([]writes, len(b.lay.tables))
	}
	for _, k := range b.order {
		v := b.writes[k]
		if t := b.lay.route([]byte(k)); t != nil {
			t.add(&perTable[t.idx], []byte(k), v, v == nil)
			continue
		}
		if v != nil {
			setK, setV = append(setK, []byte(k)), append(setV, v)
		} else {
			delK = append(delK, []byte(k))
		}
	}
	wrote = len(b.order) > 0
	if !wrote && !b.begun {
		return false
	}
	if !b.begun {
		q.Queue(b.begin)
	}
	if len(setK) > 0 {
		q.Queue(sqlUpsert, setK, setV)
	}
	if len(delK) > 0 {
		q.Queue(sqlDeleteMany, delK)
	}
	for i := range perTable {
		t, w := b.lay.tables[i], &perTable[i]
		if w.dels > 0 {
			q.Queue(t.del, w.delCols...)
		}
		if w.sets > 0 {
			q.Queue(t.upsert, w.setCols...)
		}
	}
	if wrote {
		q.Queue(sqlMark, marker)
		if len(spent) > 0 {
			q.Queue(sqlUnmark, spent)
		}
	}
	q.Queue(sqlCommit)
	return wrote
}

// txn is one Update's view of the batch: its own writes staged apart (so
// a failing fn spoils nothing), over the batch's writes, over the
// database.
type txn struct {
	b      *batch
	keys   []string
	values map[string][]byte // nil: delete
	size   int               // bytes of keys and values staged
	hooks  []func()
}

var _ kv.Txn = (*txn)(nil)

func (b *batch) newTxn() *txn { return &txn{b: b, values: make(map[string][]byte, 8)} }

func (t *txn) Get(key []byte) ([]byte, error) {
	v, ok := t.values[string(key)]
	if !ok {
		var found bool
		var err error
		if v, found, err = t.b.get(key); err != nil {
			return nil, err
		}
		if !found {
			v = nil
		}
	}
	if v == nil {
		return nil, kv.ErrNotFound
	}
	return append(make([]byte, 0, len(v)), v...), nil
}

// Scan sees the database merged with the batch's writes so far and this
// Update's own, in key order.
func (t *txn) Scan(prefix, from []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	lo, hi, ok := scanRange(prefix, from, reverse)
	if !ok {
		return nil
	}
	inRange := func(k string) bool {
		return k >= string(lo) && (hi == nil || k < string(hi))
	}
	var own []string
	for _, k := range t.b.order {
		if inRange(k) {
			own = append(own, k)
		}
	}
	for _, k := range t.keys {
		if _, ok := t.b.writes[k]; !ok && inRange(k) {
			own = append(own, k)
		}
	}
	slices.Sort(own)
	if reverse {
		slices.Reverse(own)
	}
	value := func(k string) []byte {
		if v, ok := t.values[k]; ok {
			return v
		}
		return t.b.writes[k]
	}
	var fnErr error
	visit := func(k, v []byte) (bool, error) {
		more, err := fn(k, v)
		fnErr = err
		return more, err
	}
	err := mergeScan(func(f func(k, v []byte) (bool, error)) error {
		return each(t.b.lay.scanCursor(t.b.query, prefix, lo, hi, reverse), f)
	}, own, value, reverse, visit)
	if err != nil && err != fnErr {
		return t.b.fail("scan", err)
	}
	return err
}

func (t *txn) Set(key, value []byte) error {
	if err := t.b.lay.checkWrite(key, value, false); err != nil {
		return err
	}
	// A copy, never nil (nil stages a delete).
	t.put(string(key), append(make([]byte, 0, len(value)), value...))
	return nil
}

func (t *txn) Delete(key []byte) error {
	if err := t.b.lay.checkWrite(key, nil, true); err != nil {
		return err
	}
	t.put(string(key), nil)
	return nil
}

func (t *txn) OnCommit(f func()) { t.hooks = append(t.hooks, f) }

func (t *txn) put(k string, v []byte) {
	if _, ok := t.values[k]; !ok {
		t.keys = append(t.keys, k)
	}
	t.values[k] = v
	t.size += len(k) + len(v)
}
