package format

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

func linksEqual(a, b []Link) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Target != b[i].Target || !maps.Equal(a[i].Params, b[i].Params) {
			return false
		}
	}
	return true
}

func TestParseLinks(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    []Link
	}{
		{
			"register 1.1", `</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>,</19/0>;ver=1.0`,
			[]Link{
				{Target: "/", Params: map[string]string{"rt": "oma.lwm2m", "ct": "11543"}},
				{Target: "/1/0"}, {Target: "/3/0"},
				{Target: "/19/0", Params: map[string]string{"ver": "1.0"}},
			},
		},
		{
			// DISCOVER answer with attributes and a parameter without value.
			"discover", `</3/0>;pmin=10;pmax=60,</3/0/1>,</3/0/2>;obs,</3/0/7>;dim=2`,
			[]Link{
				{Target: "/3/0", Params: map[string]string{"pmin": "10", "pmax": "60"}},
				{Target: "/3/0/1"},
				{Target: "/3/0/2", Params: map[string]string{"obs": ""}},
				{Target: "/3/0/7", Params: map[string]string{"dim": "2"}},
			},
		},
		{
			"whitespace and newlines", " </1/0> ,\r\n\t</3/0> ; ver = \"1.1\" ,\n</5/0>\n",
			[]Link{{Target: "/1/0"}, {Target: "/3/0", Params: map[string]string{"ver": "1.1"}}, {Target: "/5/0"}},
		},
		{
			"quoted delimiters and escapes", `</a>;title="x, y; z";if="a\"b\\c";rt="",</b>`,
			[]Link{{Target: "/a", Params: map[string]string{"title": "x, y; z", "if": `a"b\c`, "rt": ""}}, {Target: "/b"}},
		},
		{
			"duplicate keeps first", `</a>;rt=x;rt=y`,
			[]Link{{Target: "/a", Params: map[string]string{"rt": "x"}}},
		},
		{"empty value", `</a>;x=,</b>`, []Link{{Target: "/a", Params: map[string]string{"x": ""}}, {Target: "/b"}}},
		{"empty payload", "", nil},
		{"only whitespace", " \r\n", nil},
		{"absolute target", `<coap://[2001:db8::1]:5683/rd?ep=a,b>;ct=40`, []Link{{Target: "coap://[2001:db8::1]:5683/rd?ep=a,b", Params: map[string]string{"ct": "40"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLinks([]byte(tc.payload))
			if err != nil {
				t.Fatal(err)
			}
			if !linksEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			back, err := ParseLinks(FormatLinks(got))
			if err != nil {
				t.Fatalf("reparse %q: %v", FormatLinks(got), err)
			}
			if !linksEqual(back, got) {
				t.Errorf("round trip %q: %+v", FormatLinks(got), back)
			}
		})
	}
}

func TestParseLinksErrors(t *testing.T) {
	tests := []struct {
		payload string
		msg     string
	}{
		{`</1/0`, "unterminated '<' at offset 0"},
		{`</1/0>,</3/0`, "unterminated '<' at offset 7"},
		{`<>`, "empty link target"},
		{`</a b>`, "invalid character ' ' in link target at offset 3"},
		{`/1/0`, "must start with '<'"},
		{`</1/0>;rt="oma`, "unterminated quoted string at offset 10"},
		{`</1/0>;rt="oma\`, "unterminated quoted string"},
		{`</1/0>;=1`, "empty parameter name"},
		{`</1/0>;`, "empty parameter name"},
		{`</1/0>,`, "empty link after ','"},
		{`</1/0>,,</2/0>`, "must start with '<'"},
		{`</1/0> </2/0>`, "want ',' or ';'"},
		{`</1/0>;rt=a"b"`, "invalid character '\"' in parameter value"},
		{`</1/0>;rt="a"b`, "want ',' or ';'"},
	}
	for _, tc := range tests {
		_, err := ParseLinks([]byte(tc.payload))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: error = %v, want ErrMalformed", tc.payload, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: error %q does not mention %q", tc.payload, err, tc.msg)
		}
	}
}

func TestFormatLinks(t *testing.T) {
	links := []Link{
		{Target: "/", Params: map[string]string{"rt": "oma.lwm2m", "ct": "11543"}},
		{Target: "/1/0"},
		{Target: "/3/0", Params: map[string]string{"ver": "1.1", "obs": "", "title": `say "hi"`}},
	}
	want := `</>;ct=11543;rt="oma.lwm2m",</1/0>,</3/0>;obs;title="say \"hi\"";ver=1.1`
	if got := string(FormatLinks(links)); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := FormatLinks(nil); got == nil || len(got) != 0 {
		t.Errorf("FormatLinks(nil) = %q", got)
	}
}
