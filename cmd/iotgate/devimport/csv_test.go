package devimport

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

func TestReadGoodRows(t *testing.T) {
	const header = "node_id,product_id,device_name,secret,secure_access,timeout,tags,extension_info\n"
	for _, tc := range []struct {
		name, record string
		want         Row
	}{
		{"required only", "n1,p1,,,,,,", Row{Line: 2, NodeID: "n1", ProductID: "p1"}},
		{"every column", `n2,p1,Meter 2,s3cr3t-0123,false,300,site=a;floor=3,"{""k"":1}"`, Row{
			Line: 2, NodeID: "n2", ProductID: "p1", DeviceName: "Meter 2", Secret: "s3cr3t-0123",
			SecureAccess: ptr(false), Timeout: ptr(int64(300)),
			Tags: []Tag{{"site", "a"}, {"floor", "3"}}, ExtensionInfo: []byte(`{"k":1}`),
		}},
		{"spaces trimmed, empty tag value, trailing ;", " n3 , p1 ,,,TRUE,0, k= ; j=v;,", Row{
			Line: 2, NodeID: "n3", ProductID: "p1", SecureAccess: ptr(true), Timeout: ptr(int64(0)),
			Tags: []Tag{{"k", ""}, {"j", "v"}},
		}},
		{"quoted comma", `"n,4",p1,"a, b",,,,,`, Row{Line: 2, NodeID: "n,4", ProductID: "p1", DeviceName: "a, b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd, err := NewReader(strings.NewReader(header + tc.record + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := rd.Read()
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if _, err := rd.Read(); !errors.Is(err, io.EOF) {
				t.Errorf("after the one row: %v, want EOF", err)
			}
		})
	}
}

// Each malformed record is a *RowError naming its line and column, and
// the rows after it are still read.
func TestReadMalformedRows(t *testing.T) {
	const header = "node_id,product_id,secure_access,timeout,tags,extension_info\n"
	for _, tc := range []struct {
		name, record string
		column, msg  string
	}{
		{"no node_id", ",p1,,,,", "node_id", "is required"},
		{"no product_id", "n1, ,,,,", "product_id", "is required"},
		{"too few fields", "n1,p1,true", "", "3 fields, the header names 6 columns"},
		{"too many fields", "n1,p1,,,,,extra", "", "7 fields, the header names 6 columns"},
		{"secure_access not a boolean", "n1,p1,maybe,,,", "secure_access", `"maybe" is not true or false`},
		{"timeout not a number", "n1,p1,,5m,,", "timeout", `"5m" is not a whole number of seconds`},
		{"negative timeout", "n1,p1,,-1,,", "timeout", `"-1" is not a whole number of seconds`},
		{"tag without =", "n1,p1,,,site,", "tags", `"site" is not key=value`},
		{"tag with an empty key", "n1,p1,,,=v,", "tags", `"=v" has an empty key`},
		{"tag key twice", "n1,p1,,,a=1;a=2,", "tags", `key "a" given twice`},
		{"extension_info not JSON", "n1,p1,,,,{bad", "extension_info", "is not a JSON object"},
		{"extension_info not an object", "n1,p1,,,,[1]", "extension_info", "is not a JSON object"},
		{"bare quote", `n"1,p1,,,,`, "", "malformed CSV"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd, err := NewReader(strings.NewReader(header + "ok0,p1,,,,\n" + tc.record + "\nok1,p1,,,,\n"))
			if err != nil {
				t.Fatal(err)
			}
			if r, err := rd.Read(); err != nil || r.NodeID != "ok0" {
				t.Fatalf("first row: %+v %v", r, err)
			}
			_, err = rd.Read()
			var re *RowError
			if !errors.As(err, &re) {
				t.Fatalf("Read: %v, want a *RowError", err)
			}
			if re.Line != 3 || re.Column != tc.column || !strings.Contains(re.Msg, tc.msg) {
				t.Errorf("got line %d column %q msg %q; want line 3 column %q msg containing %q", re.Line, re.Column, re.Msg, tc.column, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "line 3: ") || (tc.column != "" && !strings.Contains(err.Error(), "column "+tc.column)) {
				t.Errorf("message %q does not name the line and column", err)
			}
			if r, err := rd.Read(); err != nil || r.NodeID != "ok1" || r.Line != 4 {
				t.Errorf("the row after: %+v %v", r, err)
			}
		})
	}
}

func TestHeaderErrors(t *testing.T) {
	for _, tc := range []struct{ name, file, msg string }{
		{"empty file", "", "the file is empty"},
		{"unknown column", "node_id,product_id,colour\n", `unknown column "colour"`},
		{"column twice", "node_id,product_id,node_id\n", "column node_id named twice"},
		{"no node_id", "product_id,device_name\n", "column node_id is required"},
		{"no product_id", "node_id\n", "column product_id is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(strings.NewReader(tc.file))
			var he *HeaderError
			if !errors.As(err, &he) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %v, want a *HeaderError with %q", err, tc.msg)
			}
		})
	}
}

// A header in another case, with a byte-order mark (as spreadsheets
// write it) and columns in any order reads the same.
func TestHeaderLenient(t *testing.T) {
	rd, err := NewReader(strings.NewReader("\ufeffProduct_ID, Node_ID\np1,n1\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := rd.Read()
	if err != nil || r.NodeID != "n1" || r.ProductID != "p1" {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := rd.Read(); !errors.Is(err, io.EOF) {
		t.Errorf("a trailing blank line: %v, want EOF", err)
	}
}
