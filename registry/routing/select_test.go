package routing

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestSelectApply(t *testing.T) {
	var whole map[string]any
	if err := json.Unmarshal([]byte(envelopeJSON), &whole); err != nil {
		t.Fatal(err)
	}
	with := func(extra map[string]any) map[string]any {
		out := make(map[string]any, len(whole)+len(extra))
		for k, v := range whole {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	cases := []struct {
		sel  string
		want map[string]any
	}{
		{"", whole},
		{" * ", whole},
		{"notify_data.header.device_id AS device_id, notify_data.body.services[0].properties",
			map[string]any{"device_id": "d1", "notify_data.body.services[0].properties": map[string]any{"temp": 31.5, "name": "it's", "on": true}}},
		{"notify_data.body.services[0].properties.temp as t, notify_data.body.missing, 'v1' AS version, 42 AS answer",
			map[string]any{"t": 31.5, "version": "v1", "answer": 42.0}},
		{"GET_TAG('site') AS site, GET_TAG('floor') AS floor", map[string]any{"site": "north-1"}},
		{"*, 'x' AS origin", with(map[string]any{"origin": "x"})},
		{"resource", map[string]any{"resource": "device.property"}},
	}
	for _, c := range cases {
		p, err := ParseSelect(c.sel)
		if err != nil {
			t.Errorf("ParseSelect(%q): %v", c.sel, err)
			continue
		}
		out := p.Apply(nil, []byte(envelopeJSON))
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Errorf("%q gave %s, not JSON: %v", c.sel, out, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q gave %s, want %v", c.sel, out, c.want)
		}
	}
}

func TestSelectRefused(t *testing.T) {
	cases := []struct {
		sel     string
		pos     int
		message string
	}{
		{"temp", 1, `unknown field "temp"`},
		{"'x'", 4, "needs a name: add AS name"},
		{"GET_TAG('site')", 16, "needs a name"},
		{"GET_TAG(site) AS s", 9, "GET_TAG takes a tag key"},
		{"resource AS r, event AS r", 25, `"r" is selected twice`},
		{"resource, resource", 11, `"resource" is selected twice`},
		{"*, *", 4, `"*" is selected twice`},
		{"*, event AS resource", 13, `"resource" is selected twice: '*' holds it`},
		{"resource AS " + strings.Repeat("a", 33), 13, "at most 32 characters"},
		{"resource AS 'r'", 13, "expected a name after AS"},
		{"resource event", 10, "expected ',' or the end of select"},
		{"resource,", 10, "expected '*', a field, GET_TAG or a constant, found end of clause"},
		{"notify_data.body.", 18, "expected a field name after '.'"},
		{"notify_data.body.a[x]", 20, "expected an array index"},
		{"resource = 'x'", 10, "expected ',' or the end of select"},
		{strings.Repeat("x", MaxSelectLen+1), MaxSelectLen + 1, "longer than 2500"},
	}
	for _, c := range cases {
		_, err := ParseSelect(c.sel)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("ParseSelect(%q) = %v, want a SyntaxError", c.sel, err)
			continue
		}
		if se.Pos+1 != c.pos || !strings.Contains(se.Error(), c.message) {
			t.Errorf("ParseSelect(%q): %q at %d, want %q at %d", c.sel, se.Error(), se.Pos+1, c.message, c.pos)
		}
	}
}

// BenchmarkSelect is the cost of projecting one push: two fields and a
// constant.
func BenchmarkSelect(b *testing.B) {
	doc := []byte(envelopeJSON)
	p, err := ParseSelect("notify_data.header.device_id AS device_id, notify_data.body.services[0].properties, 'v1' AS schema")
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, len(doc))
	b.ReportAllocs()
	for b.Loop() {
		buf = p.Apply(buf[:0], doc)
	}
}
