package registry

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv/pgkv"
	"github.com/iotgate/iotgate/registry/kv/pgkv/pgtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The registry on PostgreSQL with its layout: what real operations write
// are rows of the named tables, the hot-path indexes are unique
// constraints, and the kv table holds no key of a declared family.
func TestPostgresTables(t *testing.T) {
	srv := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url, err := srv.Database(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	store, err := pgkv.Open(ctx, pgkv.Options{URL: url, Layout: StoreLayout()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	r := newEventRegistry(t, store, clock, EventOptions{})
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	mustProduct(t, r, "proj", "coap", "CoAP")
	mustProduct(t, r, "proj", "mqtt", "MQTT")
	fp := strings.Repeat("AB", 20)
	for _, n := range []NewDevice{
		{ProjectID: "proj", NodeID: "imei-1", ProductID: "coap"},
		{ProjectID: "proj", NodeID: "imei-2", ProductID: "coap"},
		{ProjectID: "proj", NodeID: "dev-1", ProductID: "mqtt", Auth: AuthInfo{Type: AuthCertificates, Fingerprint: fp}},
		{ProjectID: "proj", NodeID: "dev-2", ProductID: "mqtt", Tags: []Tag{{Key: "site", Value: "北京"}}},
	} {
		if _, err := r.CreateDevice(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	name := "renamed"
	if _, err := r.UpdateDevice(ctx, "proj", "mqtt_dev-2", DeviceUpdate{DeviceName: &name}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateAsyncCommand(ctx, "proj", "coap_imei-1", NewAsyncCommand{Paras: json.RawMessage(`{"v":1}`)}); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteDevice(ctx, "proj", "coap_imei-2"); err != nil {
		t.Fatal(err)
	}
	// Reads go through the tables.
	if d, err := r.DeviceByNodeID(ctx, "imei-1"); err != nil || d.DeviceID != "coap_imei-1" {
		t.Fatalf("by node id: %+v, %v", d, err)
	}
	if d, err := r.DeviceByFingerprint(ctx, fp); err != nil || d.DeviceID != "mqtt_dev-1" {
		t.Fatalf("by fingerprint: %+v, %v", d, err)
	}
	l, err := r.ListDevices(ctx, "proj", DeviceFilter{}, Page{Limit: 10})
	if err != nil || l.Count != 3 || len(l.Devices) != 3 {
		t.Fatalf("list: %+v, %v", l, err)
	}
	page, err := r.Events(ctx, "proj", 0, 100)
	if err != nil || len(page.Events) < 6 {
		t.Fatalf("events: %+v, %v", page, err)
	}

	// The rows, by plain SQL.
	one := func(sql string, args ...any) string {
		t.Helper()
		var s string
		if err := conn.QueryRow(ctx, sql, args...).Scan(&s); err != nil {
			t.Fatalf("%s %v: %v", sql, args, err)
		}
		return s
	}
	for _, c := range []struct {
		sql  string
		args []any
		want string
	}{
		{`SELECT device_id FROM product_node_ids WHERE product_id = $1 AND node_id = $2`, []any{"mqtt", "dev-1"}, "mqtt_dev-1"},
		{`SELECT device_id FROM node_ids WHERE node_id = $1`, []any{"imei-1"}, "coap_imei-1"},
		{`SELECT device_id FROM fingerprints WHERE fingerprint = $1`, []any{strings.ToLower(fp)}, "mqtt_dev-1"},
		{`SELECT device_id FROM device_tags WHERE project_id = $1 AND tag_key = $2 AND tag_value = $3`, []any{"proj", "site", "北京"}, "mqtt_dev-2"},
		{`SELECT count(*)::text FROM devices`, nil, "3"},
		{`SELECT count(*)::text FROM node_ids WHERE node_id = 'imei-2'`, nil, "0"},
		{`SELECT count(*)::text FROM project_devices WHERE project_id = 'proj'`, nil, "3"},
		{`SELECT count(*)::text FROM pending_commands WHERE device_id = 'coap_imei-1'`, nil, "1"},
		{`SELECT count(*)::text FROM command_deadlines WHERE length(deadline) = 8`, nil, "1"},
		{`SELECT (count(*) >= 6)::text FROM events WHERE project_id = 'proj' AND length(position) = 8`, nil, "true"},
		{`SELECT count(*)::text FROM products`, nil, "2"},
	} {
		if got := one(c.sql, c.args...); got != c.want {
			t.Errorf("%s %v = %s, want %s", c.sql, c.args, got, c.want)
		}
	}
	// The unique constraints: a second device for the same node id (per
	// product, and platform-wide for CoAP) or fingerprint is refused by
	// the database itself.
	for _, sql := range []string{
		`INSERT INTO product_node_ids (product_id, node_id, device_id) VALUES ('mqtt', 'dev-1', 'other')`,
		`INSERT INTO node_ids (node_id, device_id) VALUES ('imei-1', 'other')`,
		`INSERT INTO fingerprints (fingerprint, device_id) VALUES ('` + strings.ToLower(fp) + `', 'other')`,
		`INSERT INTO devices (device_id, record) VALUES ('mqtt_dev-1', '\x00')`,
	} {
		_, err := conn.Exec(ctx, sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "23505" {
			t.Errorf("%s: %v, want a unique violation", sql, err)
		}
	}
	// Nothing of a declared family in kv.
	rows, err := conn.Query(ctx, `SELECT key FROM kv`)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		for _, f := range StoreLayout() {
			if f.Member(k) {
				t.Errorf("kv holds %q, of family %q (%s)", k, f.Name, f.Table)
			}
		}
	}
	// And the registry's own consistency check (records against indexes,
	// counters) agrees.
	if problems, err := r.Check(ctx); err != nil || len(problems) > 0 {
		t.Fatalf("check: %+v, %v", problems, err)
	}
}
