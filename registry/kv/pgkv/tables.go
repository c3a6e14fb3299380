package pgkv

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/iotgate/iotgate/registry/kv"
)

// table is one key family's table: typed columns for the key's parts
// (the primary key, in order) and for its value.
type table struct {
	idx    int // in layout.tables
	fam    kv.Family
	prefix string
	end    []byte   // the first key after the family's range
	cols   []string // the parts' columns
	value  string   // the value's column; "" when always empty
	get    string
	upsert string
	del    string
	sel    string // select list: parts, then value
}

// layout routes keys to their family's table; keys of no family stay in
// the kv table.
type layout struct {
	tables    []*table // in the byte order of their prefixes
	byPrefix  map[string]*table
	maxPrefix int
}

var identifier = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// newLayout checks fams and prepares their statements (no fams: every
// key in kv, a nil layout).
func newLayout(fams []kv.Family) (*layout, error) {
	if len(fams) == 0 {
		return nil, nil
	}
	if err := kv.CheckLayout(fams); err != nil {
		return nil, fmt.Errorf("pgkv: %w", err)
	}
	l := &layout{byPrefix: map[string]*table{}}
	for _, f := range kv.SortLayout(fams) {
		t := &table{fam: f, prefix: f.KeyPrefix(), value: f.Value.Name}
		if len(f.Parts) == 0 {
			t.end = append([]byte(t.prefix), 0)
		} else {
			t.end = prefixEnd([]byte(t.prefix))
		}
		names := []string{f.Table}
		for _, c := range f.Parts {
			t.cols = append(t.cols, c.Name)
			names = append(names, c.Name)
		}
		if f.Value.Kind != kv.None {
			names = append(names, f.Value.Name)
		}
		for _, n := range names {
			if !identifier.MatchString(n) {
				return nil, fmt.Errorf("pgkv: family %q: %q is not a plain lower-case SQL name", f.Name, n)
			}
		}
		if len(f.Parts) == 0 && f.Value.Kind == kv.None {
			return nil, fmt.Errorf("pgkv: family %q has neither parts nor a value", f.Name)
		}
		t.idx = len(l.tables)
		t.prepare()
		l.tables = append(l.tables, t)
		l.byPrefix[t.prefix] = t
		l.maxPrefix = max(l.maxPrefix, len(t.prefix))
	}
	return l, nil
}

func sqlType(k kv.Kind) string {
	if k == kv.Text {
		return "text"
	}
	return "bytea"
}

// prepare writes the table's statements.
func (t *table) prepare() {
	f := &t.fam
	var where, arrays, all []string
	for i, c := range f.Parts {
		where = append(where, fmt.Sprintf("%s = $%d", c.Name, i+1))
		arrays = append(arrays, fmt.Sprintf("$%d::%s[]", i+1, sqlType(c.Kind)))
		all = append(all, c.Name)
	}
	pk := strings.Join(t.cols, ", ")
	cond := strings.Join(where, " AND ")
	if len(f.Parts) == 0 {
		cond, pk = "true", ""
	}
	valueSel := "''::bytea" // a family whose values are empty
	t.sel = pk
	if t.value != "" {
		valueSel = t.value
		all = append(all, t.value)
		arrays = append(arrays, fmt.Sprintf("$%d::%s[]", len(f.Parts)+1, sqlType(f.Value.Kind)))
		if t.sel != "" {
			t.sel += ", "
		}
		t.sel += t.value
	}
	t.get = fmt.Sprintf("SELECT %s FROM %s WHERE %s", valueSel, f.Table, cond)
	switch {
	case len(f.Parts) == 0:
		// One row at most: the table has no key column, so the upsert
		// replaces what is there.
		t.upsert = fmt.Sprintf("WITH d AS (DELETE FROM %s) INSERT INTO %s (%s) SELECT * FROM unnest(%s)", f.Table, f.Table, t.value, strings.Join(arrays, ", "))
		t.del = fmt.Sprintf("DELETE FROM %s", f.Table)
	default:
		conflict := "DO NOTHING"
		if t.value != "" {
			conflict = fmt.Sprintf("DO UPDATE SET %s = excluded.%s", t.value, t.value)
		}
		t.upsert = fmt.Sprintf("INSERT INTO %s (%s) SELECT * FROM unnest(%s) ON CONFLICT (%s) %s",
			f.Table, strings.Join(all, ", "), strings.Join(arrays, ", "), pk, conflict)
		if len(f.Parts) == 1 {
			t.del = fmt.Sprintf("DELETE FROM %s WHERE %s = ANY(%s)", f.Table, t.cols[0], arrays[0])
		} else {
			t.del = fmt.Sprintf("DELETE FROM %s WHERE (%s) IN (SELECT * FROM unnest(%s))", f.Table, pk, strings.Join(arrays[:len(f.Parts)], ", "))
		}
	}
}

// route returns the table of key's family, or nil for the kv table.
func (l *layout) route(key []byte) *table {
	if l == nil {
		return nil
	}
	for n := min(len(key), l.maxPrefix); n > 0; n-- {
		if t, ok := l.byPrefix[string(key[:n])]; ok {
			if len(t.fam.Parts) > 0 || len(key) == n {
				return t
			}
			return nil // a key beside a family without parts
		}
	}
	return nil
}

// partArgs are a key's parts as statement arguments: text as string,
// binary as bytes.
func (t *table) partArgs(parts [][]byte) []any {
	args := make([]any, len(parts))
	for i, p := range parts {
		if t.fam.Parts[i].Kind == kv.Text {
			args[i] = string(p)
		} else {
			args[i] = p
		}
	}
	return args
}

// checkValue refuses a value the family's value column cannot hold.
func (t *table) checkValue(key, v []byte) error {
	switch t.fam.Value.Kind {
	case kv.None:
		if len(v) > 0 {
			return &kv.LayoutError{Family: t.fam.Name, Key: bytes.Clone(key), Reason: "a value for a family whose values are empty"}
		}
	case kv.Text:
		if !utf8.Valid(v) || bytes.IndexByte(v, 0) >= 0 {
			return &kv.LayoutError{Family: t.fam.Name, Key: bytes.Clone(key), Reason: "a text value that is not UTF-8 without 0 bytes"}
		}
	}
	return nil
}

// checkWrite refuses a write the layout cannot store (a registry bug).
func (l *layout) checkWrite(key, v []byte, del bool) error {
	if l == nil {
		return nil
	}
	t := l.route(key)
	if t == nil {
		return nil
	}
	if _, err := t.fam.Split(key); err != nil {
		return fmt.Errorf("pgkv: %w", err)
	}
	if del {
		return nil
	}
	if err := t.checkValue(key, v); err != nil {
		return fmt.Errorf("pgkv: %w", err)
	}
	return nil
}

// writes are one table's share of a batch's writes, as column arrays.
type writes struct {
	setCols []any // per part: []string or [][]byte; then the values
	delCols []any
	sets    int
	dels    int
}

func newColumns(t *table, withValue bool) []any {
	n := len(t.fam.Parts)
	cols := make([]any, 0, n+1)
	for _, c := range t.fam.Parts {
		if c.Kind == kv.Text {
			cols = append(cols, []string(nil))
		} else {
			cols = append(cols, [][]byte(nil))
		}
	}
	if withValue && t.value != "" {
		if t.fam.Value.Kind == kv.Text {
			cols = append(cols, []string(nil))
		} else {
			cols = append(cols, [][]byte(nil))
		}
	}
	return cols
}

func appendCol(col any, b []byte) any {
	switch c := col.(type) {
	case []string:
		return append(c, string(b))
	case [][]byte:
		return append(c, b)
	}
	panic("pgkv: unknown column array")
}

// add stages a write of key (already checked) in w.
func (t *table) add(w *writes, key, v []byte, del bool) {
	parts, _ := t.fam.Split(key)
	if del {
		if w.delCols == nil {
			w.delCols = newColumns(t, false)
		}
		for i, p := range parts {
			w.delCols[i] = appendCol(w.delCols[i], p)
		}
		w.dels++
		return
	}
	if w.setCols == nil {
		w.setCols = newColumns(t, true)
	}
	for i, p := range parts {
		w.setCols[i] = appendCol(w.setCols[i], p)
	}
	if t.value != "" {
		w.setCols[len(parts)] = appendCol(w.setCols[len(parts)], v)
	}
	w.sets++
}

// rangeSQL is a page of the table's rows: pinned leading parts by
// equality, then a row-value comparison for each bound (op over the
// first n columns), in primary-key order.
func (t *table) rangeSQL(pins int, lo, hi *tupleCond, reverse bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SELECT %s FROM %s WHERE true", t.sel, t.fam.Table)
	arg := 0
	next := func() string { arg++; return "$" + strconv.Itoa(arg) }
	for i := range pins {
		fmt.Fprintf(&b, " AND %s = %s", t.cols[i], next())
	}
	for _, c := range []*tupleCond{lo, hi} {
		if c == nil || len(c.vals) == 0 {
			continue
		}
		ph := make([]string, len(c.vals))
		for i := range ph {
			ph[i] = next()
		}
		fmt.Fprintf(&b, " AND (%s) %s (%s)", strings.Join(t.cols[:len(c.vals)], ", "), c.op, strings.Join(ph, ", "))
	}
	order := make([]string, len(t.cols))
	for i, c := range t.cols {
		order[i] = c
		if reverse {
			order[i] += " DESC"
		}
	}
	if len(order) > 0 {
		fmt.Fprintf(&b, " ORDER BY %s", strings.Join(order, ", "))
	}
	fmt.Fprintf(&b, " LIMIT %s", next())
	return b.String()
}

// tupleCond is a row-value comparison: (first len(vals) columns) op vals.
type tupleCond struct {
	op   string
	vals [][]byte
}

// lowerCond turns "key >= lo" into a condition on the parts (nil: none).
func (t *table) lowerCond(lo []byte) *tupleCond {
	if bytes.Compare(lo, []byte(t.prefix)) <= 0 || len(t.fam.Parts) == 0 {
		return nil
	}
	b := t.fam.BoundOf(lo)
	switch {
	case len(b.Values) == 0:
		return nil
	case b.Exact && b.Strict:
		return &tupleCond{">", b.Values}
	}
	return &tupleCond{">=", b.Values}
}

// upperCond turns "key < hi" into a condition on the parts (nil: none).
func (t *table) upperCond(hi []byte) *tupleCond {
	if hi == nil || bytes.Compare(hi, t.end) >= 0 || len(t.fam.Parts) == 0 {
		return nil
	}
	b := t.fam.BoundOf(hi)
	switch {
	case len(b.Values) == 0:
		return nil
	case b.Exact && !b.Strict:
		return &tupleCond{"<", b.Values}
	}
	return &tupleCond{"<=", b.Values}
}
