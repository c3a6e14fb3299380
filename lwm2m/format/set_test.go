package format

import (
	"errors"
	"strings"
	"testing"
)

func TestParseContentFormats(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want: the Set as String renders it
		err      string
	}{
		{"110", "110", ""},
		{"60 110 112 11542 11543", "110 112 11542 11543", ""},
		{" 112  110 ", "110 112", ""},
		{"1542 1543", "11542 11543", ""},
		{"0 42 40", "0 40 42", ""},
		{"60 11544", "", ""}, // well-formed, but nothing here speaks them
		{"", "", "empty"},
		{"110,112", "", "not a content format number"},
		{"json", "", "not a content format number"},
		{"-1", "", "not a content format number"},
		{"65536", "", "not a content format number"},
		{strings.Repeat("110 ", maxDeclaredFormats+1), "", "at most"},
	} {
		s, err := ParseContentFormats(tc.in)
		if tc.err != "" {
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want ErrMalformed with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || s.String() != tc.want {
			t.Errorf("%q: %q %v, want %q", tc.in, s, err, tc.want)
		}
	}
}

func TestSet(t *testing.T) {
	s := SetOf(FormatSenMLJSON, FormatTLVLegacy, 60)
	if !s.Has(FormatSenMLJSON) || !s.Has(FormatTLV) || !s.Has(FormatTLVLegacy) {
		t.Fatalf("%s lacks a member", s)
	}
	if s.Has(FormatSenMLCBOR) || s.Has(60) || s.Has(FormatText) {
		t.Fatalf("%s has a non-member", s)
	}
	if got := s.Formats(); len(got) != 2 || got[0] != FormatSenMLJSON || got[1] != FormatTLV {
		t.Fatalf("Formats %v", got)
	}
	var empty Set
	if empty.Has(FormatTLV) || empty.String() != "" || len(empty.Formats()) != 0 {
		t.Fatal("the zero Set is not empty")
	}
}
