package lwm2m

import (
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
		err     string
	}{
		{"empty", "", "/", nil, ""},
		{"huawei module", `</>;rt="oma.lwm2m",</1/0>,</3/0>,</19/0>`, "/", []string{"/1/0", "/3/0", "/19/0"}, ""},
		{"versions and objects", `</1>;ver=1.1,</3/0>,</3303>`, "/", []string{"/1", "/3/0", "/3303"}, ""},
		{"alternate root", `</lwm2m>;rt="oma.lwm2m",</lwm2m/1/0>,</lwm2m/3/0>`, "/lwm2m/", []string{"/1/0", "/3/0"}, ""},
		{"outside the root", `</lwm2m>;rt="oma.lwm2m",</1/0>`, "", nil, "not under the root"},
		{"resource link", `</3/0/1>`, "", nil, "not an object or object instance"},
		{"not a path", `</abc>`, "", nil, "invalid path"},
		{"leading zero", `</03/0>`, "", nil, "leading zero"},
		{"broken syntax", `</3/0`, "", nil, ""},
		{"root without slash", `<lwm2m>;rt="oma.lwm2m"`, "", nil, "does not start"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, links, err := parseObjectLinks([]byte(tc.payload))
			if tc.paths == nil && tc.root == "" {
				if err == nil {
					t.Fatalf("accepted: root %q links %v", root, links)
				}
				if tc.err != "" && !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if root != tc.root || len(links) != len(tc.paths) {
				t.Fatalf("root %q links %v", root, links)
			}
			for i, l := range links {
				if l.Path.String() != tc.paths[i] {
					t.Fatalf("link %d = %s, want %s", i, l.Path, tc.paths[i])
				}
			}
		})
	}
	_, links, _ := parseObjectLinks([]byte(`</1>;ver=1.1,</19/0>`))
	if links[0].Version != "1.1" || !hasObject(links, 19) || hasObject(links, 3) {
		t.Fatalf("links %+v", links)
	}
	many := strings.Repeat("</3/0>,", maxObjectLinks) + "</3/1>"
	if _, _, err := parseObjectLinks([]byte(many)); err == nil {
		t.Fatal("accepted more than maxObjectLinks links")
	}
}

// FuzzParseObjectLinks: hostile Register payloads never panic, and every
// accepted link is an object or instance path.
func FuzzLwM2MParseObjectLinks(f *testing.F) {
	for _, s := range []string{`</>;rt="oma.lwm2m",</1/0>,</3/0>`, `</1>;ver=1.1`, `<`, `</a>;rt="oma.lwm2m",</a/3>`, `,,,`, `</3/0>;x="\"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		root, links, err := parseObjectLinks(payload)
		if err != nil {
			return
		}
		if !strings.HasPrefix(root, "/") || !strings.HasSuffix(root, "/") {
			t.Fatalf("root %q", root)
		}
		for _, l := range links {
			if d := l.Path.Depth(); d < 1 || d > 2 {
				t.Fatalf("link %v of depth %d", l.Path, d)
			}
			if _, err := format.ParsePath(l.Path.String()); err != nil {
				t.Fatalf("link %v does not round-trip: %v", l.Path, err)
			}
		}
	})
}
