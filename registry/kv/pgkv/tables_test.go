package pgkv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/batchtask"
	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/kvtest"
	"github.com/iotgate/iotgate/registry/kv/pgkv"
	"github.com/iotgate/iotgate/registry/regions"
	"github.com/jackc/pgx/v5"
)

// fullLayout is the layout the binary gives pgkv.
func fullLayout() []kv.Family {
	return slices.Concat(registry.StoreLayout(), batchtask.StoreLayout(), regions.StoreLayout())
}

func TestConformanceRegistryLayout(t *testing.T) {
	needServer(t)
	kvtest.Run(t, kvtest.Opener{Durable: true, Open: func(dir string) (kv.Store, error) {
		return openDir(t, dir, pgkv.Options{Layout: fullLayout()})
	}})
}

// testLayout has families of every shape: text and binary parts, a
// binary part first, an optional last part, no parts, a prefix of its
// own, values of each kind. Their tables are testDDL.
func testLayout() []kv.Family {
	return []kv.Family{
		{Name: "ep", Table: "t_events", Parts: []kv.Column{kv.TextCol("project"), kv.BinaryCol("pos", 2)}, Value: kv.BytesValue("v")},
		{Name: "x", Table: "t_expiry", Parts: []kv.Column{kv.BinaryCol("at", 2), kv.TextCol("id")}},
		{Name: "#", Table: "t_counts", Parts: []kv.Column{kv.TextCol("owner"), kv.OptionalText("shard")}, Value: kv.BytesValue("v")},
		{Name: "#e", Table: "t_position", Value: kv.BytesValue("v")},
		{Name: "act/d", Prefix: "act/d/", Table: "t_entries", Parts: []kv.Column{kv.TextCol("pk"), kv.TextCol("dn")}, Value: kv.TextValue("id")},
	}
}

const testDDL = `
CREATE TABLE t_events (project text COLLATE "C" NOT NULL, pos bytea NOT NULL, v bytea NOT NULL, PRIMARY KEY (project, pos));
CREATE TABLE t_expiry (at bytea NOT NULL, id text COLLATE "C" NOT NULL, PRIMARY KEY (at, id));
CREATE TABLE t_counts (owner text COLLATE "C" NOT NULL, shard text COLLATE "C" NOT NULL, v bytea NOT NULL, PRIMARY KEY (owner, shard));
CREATE TABLE t_position (v bytea NOT NULL);
CREATE TABLE t_entries (pk text COLLATE "C" NOT NULL, dn text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL, PRIMARY KEY (pk, dn));
`

// freshDB makes an empty database and returns its URL and a connection
// to it, closed at the test's end.
func freshDB(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	ctx := testContext(t)
	url, err := needServer(t).Database(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return url, conn
}

// openTables opens a store with the test layout on a fresh database
// holding its tables, and returns a connection to that database too.
func openTables(t *testing.T, o pgkv.Options) (*pgkv.Store, *pgx.Conn) {
	t.Helper()
	ctx := testContext(t)
	url, conn := freshDB(t)
	if _, err := conn.Exec(ctx, testDDL); err != nil {
		t.Fatal(err)
	}
	o.URL = url
	s, err := pgkv.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, conn
}

// randomKey is a key of one of the test families, or of none (kept in
// kv), from small alphabets so that keys share prefixes and collide.
func randomKey(rng *rand.Rand) []byte {
	text := func() string {
		return []string{"", "a", "b", "ab", "é", "a\x01", "\x7f"}[rng.IntN(7)]
	}
	bin := func() string { return string([]byte{[]byte{0, 1, 0xff}[rng.IntN(3)], []byte{0, 1, 0xff}[rng.IntN(3)]}) }
	switch rng.IntN(9) {
	case 0:
		return []byte("ep\x00" + text() + "\x00" + bin())
	case 1:
		return []byte("x\x00" + bin() + "\x00" + text())
	case 2:
		if rng.IntN(2) == 0 {
			return []byte("#\x00" + text())
		}
		return []byte("#\x00" + text() + "\x00" + []string{"0", "1", "f"}[rng.IntN(3)])
	case 3:
		return []byte("#e")
	case 4:
		return []byte("act/d/" + text() + "\x00" + text())
	default: // kv: around and between the families' ranges
		return []byte([]string{"", "#", "#ex", "#e\x00", "e", "ep", "eq\x00", "x", "y\x00", "act/", "act/e", "\xff", "ep\x01"}[rng.IntN(13)] + text())
	}
}

func randomValue(rng *rand.Rand, key []byte) []byte {
	if bytes.HasPrefix(key, []byte("x\x00")) {
		return []byte{}
	}
	if bytes.HasPrefix(key, []byte("act/d/")) {
		return []byte(fmt.Sprintf("id%d", rng.IntN(100)))
	}
	return []byte{byte(rng.IntN(256)), 0, 'v'}
}

// modelScan is what a Scan must return from the model.
func modelScan(model map[string]string, prefix, from []byte, reverse bool) []string {
	var keys []string
	for k := range model {
		kb := []byte(k)
		if !bytes.HasPrefix(kb, prefix) {
			continue
		}
		if from != nil && ((!reverse && bytes.Compare(kb, from) < 0) || (reverse && bytes.Compare(kb, from) > 0)) {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if reverse {
		slices.Reverse(keys)
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+model[k])
	}
	return out
}

func scanOf(r kv.Reader, prefix, from []byte, reverse bool) ([]string, error) {
	var out []string
	err := r.Scan(prefix, from, reverse, func(k, v []byte) (bool, error) {
		out = append(out, string(k)+"="+string(v))
		return true, nil
	})
	return out, err
}

// randomRange is a scan's prefix and from: prefixes of keys (cut
// anywhere, inside family names and parts included) and keys.
func randomRange(rng *rand.Rand) (prefix, from []byte, reverse bool) {
	k := randomKey(rng)
	prefix = k[:rng.IntN(len(k)+1)]
	if rng.IntN(2) == 0 {
		f := randomKey(rng)
		if rng.IntN(2) == 0 {
			f = append(bytes.Clone(prefix), f[:rng.IntN(len(f)+1)]...)
		}
		from = f
	}
	return prefix, from, rng.IntN(2) == 0
}

// Against a model: random writes of keys of every family shape and of
// none, then random scans (one family, several, none; from anywhere;
// both directions), in Views and in Updates over staged writes. Scans
// page (the model holds more keys than a first page).
func TestTablesModel(t *testing.T) {
	s, _ := openTables(t, pgkv.Options{Layout: testLayout()})
	ctx := testContext(t)
	rng := rand.New(rand.NewPCG(7, 11))
	model := map[string]string{}
	for range 40 {
		err := s.Update(ctx, func(tx kv.Txn) error {
			for range 12 {
				k := randomKey(rng)
				if rng.IntN(4) == 0 {
					if err := tx.Delete(k); err != nil {
						return err
					}
					delete(model, string(k))
					continue
				}
				v := randomValue(rng, k)
				if err := tx.Set(k, v); err != nil {
					return err
				}
				model[string(k)] = string(v)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(model) < 100 {
		t.Fatalf("model holds %d keys: too few to page", len(model))
	}
	for k, v := range model {
		err := s.View(ctx, func(r kv.Reader) error {
			got, err := r.Get([]byte(k))
			if err != nil || string(got) != v {
				return fmt.Errorf("Get(%q) = %q, %v; want %q", k, got, err, v)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check := func(r kv.Reader, m map[string]string, prefix, from []byte, reverse bool) {
		t.Helper()
		got, err := scanOf(r, prefix, from, reverse)
		if err != nil {
			t.Fatalf("Scan(%q, %q, %v): %v", prefix, from, reverse, err)
		}
		if want := modelScan(m, prefix, from, reverse); !slices.Equal(got, want) {
			t.Fatalf("Scan(%q, %q, %v):\n got %q\nwant %q", prefix, from, reverse, got, want)
		}
	}
	_ = s.View(ctx, func(r kv.Reader) error {
		check(r, model, nil, nil, false)
		check(r, model, nil, nil, true)
		for range 400 {
			p, f, rev := randomRange(rng)
			check(r, model, p, f, rev)
		}
		return nil
	})
	// In an Update, over its staged writes (discarded: fn fails).
	stop := errors.New("stop")
	err := s.Update(ctx, func(tx kv.Txn) error {
		m := maps(model)
		for range 30 {
			k := randomKey(rng)
			if rng.IntN(3) == 0 {
				_ = tx.Delete(k)
				delete(m, string(k))
			} else {
				v := randomValue(rng, k)
				_ = tx.Set(k, v)
				m[string(k)] = string(v)
			}
		}
		for range 200 {
			p, f, rev := randomRange(rng)
			check(tx, m, p, f, rev)
		}
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatal(err)
	}
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Keys of declared families are rows of their tables, typed; the kv
// table holds only the others.
func TestTablesRows(t *testing.T) {
	s, conn := openTables(t, pgkv.Options{Layout: testLayout()})
	ctx := testContext(t)
	err := s.Update(ctx, func(tx kv.Txn) error {
		for k, v := range map[string]string{
			"ep\x00proj\x00\x00\x01": "e1", "x\x00\x00\x00\x00dev": "", "#\x00proj": "5", "#\x00proj\x003": "2",
			"#e": "\x00\x07", "act/d/pk1\x00dn1": "dev1", "other": "o",
		} {
			if err := tx.Set([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	if err := conn.QueryRow(ctx, `SELECT id FROM t_entries WHERE pk = $1 AND dn = $2`, "pk1", "dn1").Scan(&id); err != nil || id != "dev1" {
		t.Fatalf("t_entries: %q, %v", id, err)
	}
	var shards []string
	rows, _ := conn.Query(ctx, `SELECT shard FROM t_counts WHERE owner = 'proj' ORDER BY shard`)
	shards, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || !slices.Equal(shards, []string{"", "3"}) {
		t.Fatalf("t_counts shards %q, %v", shards, err)
	}
	var keys []string
	rows, _ = conn.Query(ctx, `SELECT convert_from(key, 'UTF8') FROM kv ORDER BY key`)
	if keys, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil || !slices.Equal(keys, []string{"other"}) {
		t.Fatalf("kv holds %q (%v), want only the key of no family", keys, err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO t_entries (pk, dn, id) VALUES ('pk1', 'dn1', 'dev2')`); err == nil || !strings.Contains(err.Error(), "23505") {
		t.Fatalf("a duplicate entry: %v, want a unique violation", err)
	}
	// Deletes reach the tables.
	err = s.Update(ctx, func(tx kv.Txn) error {
		for _, k := range []string{"ep\x00proj\x00\x00\x01", "x\x00\x00\x00\x00dev", "#\x00proj", "#e", "act/d/pk1\x00dn1"} {
			if err := tx.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM t_events) + (SELECT count(*) FROM t_expiry) +
		(SELECT count(*) FROM t_counts) + (SELECT count(*) FROM t_position) + (SELECT count(*) FROM t_entries)`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d rows left in the tables (%v), want the one shard", n, err)
	}
}

// A key its family cannot hold is refused with an error naming the
// family, and the Update writes nothing; a Get of one is an error too.
func TestTablesRefuseBadKeys(t *testing.T) {
	s, _ := openTables(t, pgkv.Options{Layout: testLayout()})
	ctx := testContext(t)
	for _, c := range []struct{ key, value, family string }{
		{"ep\x00proj\x00\x01", "v", "ep"},          // position too short
		{"ep\x00\xff\x00\x00\x01", "v", "ep"},      // project not UTF-8
		{"x\x00\x00\x01\x00dev", "not empty", "x"}, // a value where none is kept
		{"act/d/pk\x00dn", "\xff", "act/d"},        // text value not UTF-8
		{"#\x00proj\x00", "1", "#"},                // empty optional part
	} {
		err := s.Update(ctx, func(tx kv.Txn) error {
			if err := tx.Set([]byte("other"), []byte("x")); err != nil {
				return err
			}
			return tx.Set([]byte(c.key), []byte(c.value))
		})
		var le *kv.LayoutError
		if !errors.As(err, &le) || le.Family != c.family {
			t.Errorf("Set(%q): %v, want a LayoutError naming %q", c.key, err, c.family)
		}
	}
	err := s.View(ctx, func(r kv.Reader) error {
		if _, err := r.Get([]byte("other")); !errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("other: %v, want not found (the refused Updates wrote nothing)", err)
		}
		var le *kv.LayoutError
		if _, err := r.Get([]byte("ep\x00p\x00\x01")); !errors.As(err, &le) {
			return fmt.Errorf("Get of a bad key: %v", err)
		}
		// The transaction goes on.
		_, err := r.Get([]byte("#e"))
		if !errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("Get after a bad key: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A layout whose table is missing or differs is refused at Open, naming
// the table.
func TestTablesSchemaCheck(t *testing.T) {
	ctx := testContext(t)
	url, conn := freshDB(t)
	if _, err := conn.Exec(ctx, strings.Replace(testDDL, `id text COLLATE "C" NOT NULL, PRIMARY KEY (pk, dn)`, `id bytea NOT NULL, PRIMARY KEY (pk, dn)`, 1)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		fams  []kv.Family
		table string
	}{
		{append(testLayout()[:4:4], kv.Family{Name: "zz", Table: "t_missing", Parts: []kv.Column{kv.TextCol("a")}}), "t_missing"},
		{testLayout(), "t_entries"},
	} {
		_, err := pgkv.Open(ctx, pgkv.Options{URL: url, Layout: c.fams})
		var se *pgkv.SchemaError
		if !errors.As(err, &se) || se.Table != c.table {
			t.Errorf("Open: %v, want a SchemaError naming %s", err, c.table)
		}
	}
}

// A database written without tables (every key in kv, as before) is
// opened with the layout: its rows move to their tables, in several
// transactions, and read back the same.
func TestTablesMoveFromKV(t *testing.T) {
	ctx := testContext(t)
	url, conn := freshDB(t)
	if _, err := conn.Exec(ctx, testDDL); err != nil {
		t.Fatal(err)
	}
	old, err := pgkv.Open(ctx, pgkv.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	model := map[string]string{}
	for i := range 3 {
		err := old.Update(ctx, func(tx kv.Txn) error {
			for j := range 1600 {
				k := randomKey(rng)
				if j%2 == 0 { // many events: more than one move batch
					k = append(fmt.Appendf(nil, "ep\x00p%d\x00", i), byte(j>>8), byte(j))
				}
				v := randomValue(rng, k)
				model[string(k)] = string(v)
				if err := tx.Set(k, v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	old.Close()
	var inKV int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM kv`).Scan(&inKV); err != nil || inKV != len(model) {
		t.Fatalf("kv holds %d rows (%v), want %d", inKV, err, len(model))
	}
	s, err := pgkv.Open(ctx, pgkv.Options{URL: url, Layout: testLayout()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.View(ctx, func(r kv.Reader) error {
		got, err := scanOf(r, nil, nil, false)
		if err != nil {
			return err
		}
		if want := modelScan(model, nil, nil, false); !slices.Equal(got, want) {
			return fmt.Errorf("after the move, %d keys read back, want %d", len(got), len(want))
		}
		for k, v := range model {
			if got, err := r.Get([]byte(k)); err != nil || string(got) != v {
				return fmt.Errorf("Get(%q) = %q, %v; want %q", k, got, err, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var events int
	fams := testLayout()
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM t_events`).Scan(&events); err != nil || events < 2400 {
		t.Fatalf("t_events holds %d rows (%v)", events, err)
	}
	rows, _ := conn.Query(ctx, `SELECT key FROM kv`)
	kvKeys, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kvKeys {
		for _, f := range fams {
			if f.Member(k) {
				t.Errorf("kv still holds %q of family %q", k, f.Name)
			}
		}
	}
	if len(kvKeys) == 0 {
		t.Fatal("the model has keys of no family: kv should hold them")
	}
}

// The activation centre's directory on the binary's layout: an Alibaba
// product key and device name is one row of activation_entries, unique
// by the database's constraint, found by device id through
// activation_device_ids; a move under way is a row of activation_moves.
func TestTablesActivationDirectory(t *testing.T) {
	ctx := testContext(t)
	url, err := needServer(t).Database(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := pgkv.Open(ctx, pgkv.Options{URL: url, Layout: fullLayout()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	d := regions.NewDirectory(s)
	e := regions.Entry{ProductKey: "a1B2c3D4e5", DeviceName: "meter-1", ProjectID: "proj", DeviceID: "dev-1", Region: "cn-north-4"}
	if _, err := d.Assign(ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Update(ctx, e.ProductKey, e.DeviceName, func(cur *regions.Entry) error {
		cur.From, cur.Region = cur.Region, "cn-east-3"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := d.ByDeviceID(ctx, "dev-1"); err != nil || got.Region != "cn-east-3" {
		t.Fatalf("by device id: %+v, %v", got, err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM activation_entries WHERE product_key = $1 AND device_name = $2`,
		e.ProductKey, e.DeviceName).Scan(&n); err != nil || n != 1 {
		t.Fatalf("activation_entries: %d rows, %v", n, err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM activation_device_ids WHERE device_id = 'dev-1'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("activation_device_ids: %d rows, %v", n, err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM activation_moves`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("activation_moves: %d rows, %v", n, err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO activation_entries (product_key, device_name, entry) VALUES ($1, $2, '\x00')`,
		e.ProductKey, e.DeviceName); err == nil || !strings.Contains(err.Error(), "23505") {
		t.Fatalf("a second entry for the same Alibaba names: %v, want a unique violation", err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM kv`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("kv holds %d rows (%v), want none", n, err)
	}
}
