package lwm2m

import (
	"fmt"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/lwm2m/format"
)

func TestLwM2MParseObjectLinks(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload string
		root    string
		paths   []string
		formats string // the declared Set, as Set.String renders it
		err     string
	}{
		{"empty", "", "/", nil, "", ""},
		{"huawei module", `</>;rt="oma.lwm2m",</1/0>,</3/0>,</19/0>`, "/", []string{"/1/0", "/3/0", "/19/0"}, "", ""},
		{"versions and objects", `</1>;ver=1.1,</3/0>,</3303>`, "/", []string{"/1", "/3/0", "/3303"}, "", ""},
		{"alternate root", `</lwm2m>;rt="oma.lwm2m",</lwm2m/1/0>,</lwm2m/3/0>`, "/lwm2m/", []string{"/1/0", "/3/0"}, "", ""},
		{"wakaama senml json", `</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>`, "/", []string{"/1/0", "/3/0"}, "110", ""},
		{"format list", `</>;rt="oma.lwm2m";ct="60 110 112 11542 11543",</3/0>`, "/", []string{"/3/0"}, "110 112 11542 11543", ""},
		{"root link without rt", `</>;ct=11543,</3/0>`, "/", []string{"/3/0"}, "11543", ""},
		{"ct on the alternate root", `</lwm2m>;rt="oma.lwm2m";ct=112,</lwm2m/3/0>`, "/lwm2m/", []string{"/3/0"}, "112", ""},
		{"legacy tlv number", `</>;ct=1542,</3/0>`, "/", []string{"/3/0"}, "11542", ""},
		{"ct on an object is not a declaration", `</3/0>;ct=110`, "/", []string{"/3/0"}, "", ""},
		{"malformed ct", `</>;rt="oma.lwm2m";ct="110 json",</3/0>`, "", nil, "", "not a content format number"},
		{"ct out of range", `</>;ct=70000,</3/0>`, "", nil, "", "not a content format number"},
		{"outside the root", `</lwm2m>;rt="oma.lwm2m",</1/0>`, "", nil, "", "not under the root"},
		{"resource link", `</3/0/1>`, "", nil, "", "not an object or object instance"},
		{"not a path", `</abc>`, "", nil, "", "invalid path"},
		{"leading zero", `</03/0>`, "", nil, "", "leading zero"},
		{"broken syntax", `</3/0`, "", nil, "", ""},
		{"root without slash", `<lwm2m>;rt="oma.lwm2m"`, "", nil, "", "does not start"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseObjectLinks([]byte(tc.payload))
			if tc.paths == nil && tc.root == "" {
				if err == nil {
					t.Fatalf("accepted: %+v", got)
				}
				if tc.err != "" && !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Root != tc.root || len(got.Objects) != len(tc.paths) {
				t.Fatalf("root %q links %v", got.Root, got.Objects)
			}
			for i, l := range got.Objects {
				if l.Path.String() != tc.paths[i] {
					t.Fatalf("link %d = %s, want %s", i, l.Path, tc.paths[i])
				}
			}
			if got.Formats.String() != tc.formats {
				t.Fatalf("formats %q, want %q", got.Formats, tc.formats)
			}
		})
	}
	got, _ := parseObjectLinks([]byte(`</1>;ver=1.1,</19/0>`))
	if got.Objects[0].Version != "1.1" || !hasObject(got.Objects, 19) || hasObject(got.Objects, 3) {
		t.Fatalf("links %+v", got.Objects)
	}
	many := strings.Repeat("</3/0>,", maxObjectLinks) + "</3/1>"
	if _, err := parseObjectLinks([]byte(many)); err == nil {
		t.Fatal("accepted more than maxObjectLinks links")
	}
}

// FuzzParseObjectLinks: hostile Register payloads never panic, and every
// accepted link is an object or instance path.
func FuzzLwM2MParseObjectLinks(f *testing.F) {
	for _, s := range []string{`</>;rt="oma.lwm2m",</1/0>,</3/0>`, `</1>;ver=1.1`, `<`, `</a>;rt="oma.lwm2m",</a/3>`, `,,,`, `</3/0>;x="\"`, `</>;ct="110 112"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		got, err := parseObjectLinks(payload)
		if err != nil {
			return
		}
		if !strings.HasPrefix(got.Root, "/") || !strings.HasSuffix(got.Root, "/") {
			t.Fatalf("root %q", got.Root)
		}
		for _, l := range got.Objects {
			if d := l.Path.Depth(); d < 1 || d > 2 {
				t.Fatalf("link %v of depth %d", l.Path, d)
			}
			if _, err := format.ParsePath(l.Path.String()); err != nil {
				t.Fatalf("link %v does not round-trip: %v", l.Path, err)
			}
		}
	})
}

// TestLinkSetsShareParsedLinks: identical payloads share one parsed list
// (a fleet's registrations hold one copy), distinct ones do not, a bad
// payload is refused each time and never kept, and past maxLinkSets
// payloads are still parsed, not kept.
func TestLinkSetsShareParsedLinks(t *testing.T) {
	c := newLinkSets()
	a, err := c.parse([]byte("</1/0>,</3/0>,</19/0>"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.parse([]byte("</1/0>,</3/0>,</19/0>"))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Objects) != 3 || &a.Objects[0] != &b.Objects[0] {
		t.Fatalf("identical payloads parsed twice: %v %v", a.Objects, b.Objects)
	}
	d, err := c.parse([]byte("</1/0>,</3/0>"))
	if err != nil || len(d.Objects) != 2 || &d.Objects[0] == &a.Objects[0] {
		t.Fatalf("distinct payload: %v %v", d.Objects, err)
	}
	for range 2 {
		if _, err := c.parse([]byte("</1/0>,<coap://x/3>")); err == nil {
			t.Fatal("bad links accepted")
		}
	}
	if len(c.m) != 2 {
		t.Fatalf("%d payloads kept, want 2", len(c.m))
	}
	for i := range maxLinkSets + 10 {
		if _, err := c.parse(fmt.Appendf(nil, "</%d/0>", i+100)); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.m) != maxLinkSets {
		t.Fatalf("%d payloads kept, want at most %d", len(c.m), maxLinkSets)
	}
	if l, err := c.parse([]byte("</70000/0>")); err == nil {
		t.Fatalf("object id out of range accepted: %v", l)
	}
}
