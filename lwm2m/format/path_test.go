package format

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	tests := []struct {
		in   string
		want Path
	}{
		{"/", Path{-1, -1, -1, -1}},
		{"/3", Path{3, -1, -1, -1}},
		{"/3/0", Path{3, 0, -1, -1}},
		{"/3/0/0", Path{3, 0, 0, -1}},
		{"/3/0/6/1", Path{3, 0, 6, 1}},
		{"/65535/65535/65535/65535", Path{65535, 65535, 65535, 65535}},
	}
	for _, tc := range tests {
		got, err := ParsePath(tc.in)
		if err != nil {
			t.Errorf("ParsePath(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParsePath(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
		if got.Depth() != strings.Count(tc.in, "/")-map[bool]int{true: 1}[tc.in == "/"] {
			t.Errorf("%q Depth() = %d", tc.in, got.Depth())
		}
	}
}

func TestParsePathErrors(t *testing.T) {
	tests := []struct{ in, msg string }{
		{"", "must start with '/'"},
		{"3/0", "must start with '/'"},
		{"//", "level 1: empty id"},
		{"/3/", "level 2: empty id"},
		{"/3//0", "level 2: empty id"},
		{"/3/0/0/0/0", "more than 4 levels"},
		{"/65536", "exceeds 65535"},
		{"/123456", "too long"},
		{"/03", "leading zero"},
		{"/-1", "not a decimal number"},
		{"/+1", "not a decimal number"},
		{"/3/a", "not a decimal number"},
		{"/3 ", "not a decimal number"},
	}
	for _, tc := range tests {
		_, err := ParsePath(tc.in)
		if !errors.Is(err, ErrInvalidPath) {
			t.Errorf("ParsePath(%q) error = %v, want ErrInvalidPath", tc.in, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParsePath(%q) error %q does not mention %q", tc.in, err, tc.msg)
		}
	}
}

func TestPathHelpers(t *testing.T) {
	if NewPath() != (Path{-1, -1, -1, -1}) || NewPath(3, 0, 6, 1) != (Path{3, 0, 6, 1}) {
		t.Error("NewPath")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("NewPath with 5 ids did not panic")
			}
		}()
		NewPath(1, 2, 3, 4, 5)
	}()
	obj, inst, res := NewPath(3), NewPath(3, 0), NewPath(3, 0, 1)
	if !NewPath().Contains(res) || !obj.Contains(inst) || !inst.Contains(inst) || inst.Contains(obj) || NewPath(3, 1).Contains(res) || NewPath(4).Contains(res) {
		t.Error("Contains")
	}
	if inst.Child(1) != res || NewPath(3, 0, 6, 1).Child(2) != NewPath(3, 0, 6, 1) {
		t.Error("Child")
	}
	for _, p := range []Path{{3, -1, 0, -1}, {70000, -1, -1, -1}, {-2, -1, -1, -1}, {0, 0, 0, 0}} {
		err := p.validate()
		if (p == Path{0, 0, 0, 0}) != (err == nil) {
			t.Errorf("validate(%+v) = %v", p, err)
		}
	}
	b, err := json.Marshal(map[string]Path{"p": res})
	if err != nil || string(b) != `{"p":"/3/0/1"}` {
		t.Errorf("marshal = %s, %v", b, err)
	}
	var back struct{ P Path }
	if err := json.Unmarshal([]byte(`{"P":"/3/0/1"}`), &back); err != nil || back.P != res {
		t.Errorf("unmarshal = %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"P":"/x"}`), &back); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("unmarshal bad path: %v", err)
	}
	if _, err := json.Marshal(Path{3, -1, 1, -1}); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("marshal invalid path: %v", err)
	}
}
