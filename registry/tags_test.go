package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
)

func tagged(t *testing.T, r *Registry, project string, qs []TagQuery, pg Page) (ids []string, count int64, marker string) {
	t.Helper()
	if pg.Limit == 0 {
		pg.Limit = 50
	}
	l, err := r.DevicesByTags(context.Background(), project, qs, pg)
	if err != nil {
		t.Fatal(err)
	}
	return l.DeviceIDs, l.Count, l.Marker
}

func strp(s string) *string { return &s }

func TestDeviceTags(t *testing.T) {
	r, store := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "prod", "MQTT")
	mustProduct(t, r, "other", "oprod", "MQTT")
	create := func(project, product, node string, tags ...Tag) *Device {
		t.Helper()
		d, err := r.CreateDevice(ctx, NewDevice{ProjectID: project, ProductID: product, NodeID: node, Tags: tags})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d1 := create("proj", "prod", "n1", Tag{"room", "201"}, Tag{"楼层", "二"})
	create("proj", "prod", "n2", Tag{"room", "202"})
	create("proj", "prod", "n3")
	create("other", "oprod", "n1", Tag{"room", "201"})
	if got, _ := r.ProjectDevice(ctx, "proj", d1.DeviceID); fmt.Sprint(got.Tags) != "[{room 201} {楼层 二}]" {
		t.Fatalf("stored tags %v", got.Tags)
	}

	// Queries: a key with any value, a key and value, several (or'ed),
	// newest first, within the project.
	if ids, n, _ := tagged(t, r, "proj", []TagQuery{{Key: "room"}}, Page{}); fmt.Sprint(ids) != "[prod_n2 prod_n1]" || n != 2 {
		t.Fatalf("room=*: %v %d", ids, n)
	}
	if ids, _, _ := tagged(t, r, "proj", []TagQuery{{Key: "room", Value: strp("201")}}, Page{}); fmt.Sprint(ids) != "[prod_n1]" {
		t.Fatalf("room=201: %v", ids)
	}
	if ids, _, _ := tagged(t, r, "proj", []TagQuery{{Key: "room", Value: strp("202")}, {Key: "楼层"}}, Page{}); fmt.Sprint(ids) != "[prod_n2 prod_n1]" {
		t.Fatalf("or: %v", ids)
	}
	if ids, n, _ := tagged(t, r, "proj", []TagQuery{{Key: "room", Value: strp("20")}}, Page{}); len(ids) != 0 || n != 0 {
		t.Fatalf("a value's prefix matched: %v", ids)
	}
	// Paging: limit, then on from the marker; offset skips.
	ids, n, marker := tagged(t, r, "proj", []TagQuery{{Key: "room"}}, Page{Limit: 1})
	if fmt.Sprint(ids) != "[prod_n2]" || n != 2 || marker == "" {
		t.Fatalf("page 1: %v %d %q", ids, n, marker)
	}
	if ids, _, _ = tagged(t, r, "proj", []TagQuery{{Key: "room"}}, Page{Limit: 1, Marker: marker}); fmt.Sprint(ids) != "[prod_n1]" {
		t.Fatalf("page 2: %v", ids)
	}
	if ids, _, _ = tagged(t, r, "proj", []TagQuery{{Key: "room"}}, Page{Limit: 5, Offset: 1}); fmt.Sprint(ids) != "[prod_n1]" {
		t.Fatalf("offset 1: %v", ids)
	}

	// Bind: a key it has takes the new value, others are added.
	d, err := r.BindTags(ctx, "proj", "prod_n1", []Tag{{"room", "301"}, {"owner", "ops"}})
	if err != nil || fmt.Sprint(d.Tags) != "[{room 301} {楼层 二} {owner ops}]" {
		t.Fatalf("bind: %v %v", d, err)
	}
	if ids, _, _ := tagged(t, r, "proj", []TagQuery{{Key: "room", Value: strp("201")}}, Page{}); len(ids) != 0 {
		t.Fatalf("the old value is still indexed: %v", ids)
	}
	if ids, _, _ := tagged(t, r, "proj", []TagQuery{{Key: "room", Value: strp("301")}}, Page{}); fmt.Sprint(ids) != "[prod_n1]" {
		t.Fatalf("the new value: %v", ids)
	}
	// Unbind: known keys only.
	if _, err := r.UnbindTags(ctx, "proj", "prod_n1", []string{"owner", "nope"}); !errors.As(err, new(*ValidationError)) {
		t.Fatalf("unbind of a missing key: %v", err)
	}
	if d, err = r.UnbindTags(ctx, "proj", "prod_n1", []string{"owner", "楼层"}); err != nil || fmt.Sprint(d.Tags) != "[{room 301}]" {
		t.Fatalf("unbind: %v %v", d, err)
	}
	// Update replaces them; other projects' devices are not found.
	if d, err = r.UpdateDevice(ctx, "proj", "prod_n2", DeviceUpdate{Tags: &[]Tag{{Key: "zone", Value: "a"}}}); err != nil || fmt.Sprint(d.Tags) != "[{zone a}]" {
		t.Fatalf("update: %v %v", d, err)
	}
	if _, err := r.BindTags(ctx, "other", "prod_n1", []Tag{{"x", "y"}}); !errors.As(err, new(*NotFoundError)) {
		t.Fatalf("other project: %v", err)
	}
	if ids, _, _ := tagged(t, r, "other", []TagQuery{{Key: "room"}}, Page{}); fmt.Sprint(ids) != "[oprod_n1]" {
		t.Fatalf("other project's query: %v", ids)
	}

	// Limits.
	eleven := make([]Tag, 11)
	for i := range eleven {
		eleven[i] = Tag{Key: fmt.Sprintf("k%d", i)}
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"eleven at creation", func() error {
			_, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: "x", Tags: eleven})
			return err
		}(), "at most 10"},
		{"over ten bound", func() error {
			_, err := r.BindTags(ctx, "proj", "prod_n3", eleven[:10])
			_, err = r.BindTags(ctx, "proj", "prod_n3", eleven[10:])
			return err
		}(), "at most 10"},
		{"long key", func() error {
			_, err := r.BindTags(ctx, "proj", "prod_n2", []Tag{{Key: strings.Repeat("k", 65)}})
			return err
		}(), "1 to 64"},
		{"long value", func() error {
			_, err := r.BindTags(ctx, "proj", "prod_n2", []Tag{{"k", strings.Repeat("v", 129)}})
			return err
		}(), "at most 128"},
		{"empty key", func() error { _, err := r.BindTags(ctx, "proj", "prod_n2", []Tag{{Value: "v"}}); return err }(), "1 to 64"},
		{"space", func() error { _, err := r.BindTags(ctx, "proj", "prod_n2", []Tag{{"a b", "v"}}); return err }(), "may hold only"},
		{"twice", func() error { _, err := r.BindTags(ctx, "proj", "prod_n2", []Tag{{"a", "1"}, {"a", "2"}}); return err }(), "given twice"},
		{"no tags", func() error { _, err := r.BindTags(ctx, "proj", "prod_n2", nil); return err }(), "required"},
		{"no keys", func() error { _, err := r.UnbindTags(ctx, "proj", "prod_n2", nil); return err }(), "required"},
		{"no query", func() error { _, err := r.DevicesByTags(ctx, "proj", nil, Page{Limit: 1}); return err }(), "1 to 10 tags"},
	} {
		var ve *ValidationError
		if !errors.As(tc.err, &ve) || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v, want a ValidationError saying %q", tc.name, tc.err, tc.want)
		}
	}
	if d, _ := r.ProjectDevice(ctx, "proj", "prod_n3"); len(d.Tags) != 10 {
		t.Fatalf("a refused bind changed the tags: %v", d.Tags)
	}

	// Deleting a device deletes its index entries.
	if err := r.DeleteDevice(ctx, "proj", "prod_n1"); err != nil {
		t.Fatal(err)
	}
	var left []string
	if err := store.View(ctx, func(rd kv.Reader) error {
		return rd.Scan(prefixKey(famTag, "proj", "room"), nil, false, func(k, v []byte) (bool, error) {
			left = append(left, string(v))
			return true, nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("index entries of room after the delete: %v", left)
	}
}

// Events carry the device's tags in their header (and a device event in
// its body).
func TestEventsCarryTags(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "prod", "MQTT")
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: "n1", Tags: []Tag{{"room", "201"}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.ReportProperties(ctx, "prod_n1", []ServiceProperties{{ServiceID: "s"}}); err != nil {
		t.Fatal(err)
	}
	p, err := r.Events(ctx, "proj", 0, 10)
	if err != nil || len(p.Events) != 2 {
		t.Fatalf("events: %v %v", p, err)
	}
	for _, e := range p.Events {
		if fmt.Sprint(e.Header.Tags) != "[{room 201}]" {
			t.Errorf("%s/%s header tags %v", e.Resource, e.Event, e.Header.Tags)
		}
	}
	if !strings.Contains(string(p.Events[0].Body), `"tags":[{"tag_key":"room","tag_value":"201"}]`) {
		t.Errorf("device create body %s", p.Events[0].Body)
	}
}

// A query keeps only its page's window: pages over many tagged devices
// come out newest first, each device once (and counted once) however
// many of the queried tags it has.
func TestDevicesByTagsPages(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "prod", "MQTT")
	var want []string
	for i := range 15 {
		tags := []Tag{{"a", fmt.Sprint(i % 3)}}
		if i%2 == 0 {
			tags = append(tags, Tag{"b", ""})
		}
		d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: fmt.Sprintf("n%02d", i), Tags: tags})
		if err != nil {
			t.Fatal(err)
		}
		want = append([]string{d.DeviceID}, want...) // newest first
	}
	qs := []TagQuery{{Key: "a"}, {Key: "b"}}
	var got []string
	marker := ""
	for {
		ids, n, m := tagged(t, r, "proj", qs, Page{Limit: 4, Marker: marker})
		if n != 15 {
			t.Fatalf("count %d, want 15", n)
		}
		got = append(got, ids...)
		if len(ids) < 4 {
			break
		}
		marker = m
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pages %v, want %v", got, want)
	}
	if ids, _, _ := tagged(t, r, "proj", qs, Page{Limit: 2, Offset: 3}); fmt.Sprint(ids) != fmt.Sprint(want[3:5]) {
		t.Fatalf("offset 3: %v, want %v", ids, want[3:5])
	}
	if ids, n, _ := tagged(t, r, "proj", []TagQuery{{Key: "a", Value: strp("1")}}, Page{Limit: 50}); n != 5 || len(ids) != 5 {
		t.Fatalf("a=1: %v %d", ids, n)
	}
}
