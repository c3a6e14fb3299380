package batchtask

import (
	"errors"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/registry"
	"github.com/xuri/excelize/v2"
)

// xlsx builds a workbook whose first sheet holds rows.
func xlsx(t testing.TB, rows ...[]string) []byte {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	for i, r := range rows {
		cell, _ := excelize.CoordinatesToCellName(1, i+1)
		if err := f.SetSheetRow(f.GetSheetName(0), cell, &r); err != nil {
			t.Fatal(err)
		}
	}
	b, err := f.WriteToBuffer()
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestReadSheet(t *testing.T) {
	tests := []struct {
		name, file string
		content    []byte
		wantErr    string // in the ValidationError's reason
		wantHeader []string
		wantRows   [][]string
		wantLines  []int
	}{
		{name: "xlsx", file: "a.xlsx", content: xlsx(t, []string{" Node_ID ", "product_id"}, []string{"n1", "p"}, nil, []string{"n2", "p"}),
			wantHeader: []string{"node_id", "product_id"}, wantRows: [][]string{{"n1", "p"}, {"n2", "p"}}, wantLines: []int{2, 4}},
		{name: "csv", file: "a.CSV", content: []byte("node_id,product_id\nn1,p\n,\nn2,p\n"),
			wantHeader: []string{"node_id", "product_id"}, wantRows: [][]string{{"n1", "p"}, {"n2", "p"}}, wantLines: []int{2, 4}},
		{name: "text named xlsx", file: "a.xlsx", content: []byte("node_id,product_id\n"), wantErr: "is not an xlsx workbook"},
		{name: "empty csv", file: "a.csv", content: nil, wantErr: "is empty"},
		{name: "header only", file: "a.xlsx", content: xlsx(t, []string{"node_id"}), wantErr: "has a header but no rows"},
		{name: "too many rows", file: "a.csv", content: []byte("device_id\na\nb\nc\n"), wantErr: "has more than 2 rows"},
		{name: "bad csv", file: "a.csv", content: []byte("device_id\n\"a\n"), wantErr: "is not valid CSV"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ReadSheet(tt.file, tt.content, 2)
			if tt.wantErr != "" {
				var ve *registry.ValidationError
				if !errors.As(err, &ve) || ve.Field != "file" || !strings.Contains(ve.Reason, tt.wantErr) {
					t.Fatalf("want a file error with %q, got %v", tt.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(s.Header, ",") != strings.Join(tt.wantHeader, ",") || len(s.Rows) != len(tt.wantRows) {
				t.Fatalf("header %q, %d rows", s.Header, len(s.Rows))
			}
			for i, r := range s.Rows {
				if s.Get(r, "node_id")+s.Get(r, "product_id") != strings.Join(tt.wantRows[i], "") || r.Line != tt.wantLines[i] {
					t.Errorf("row %d: %q at line %d", i, r.Values, r.Line)
				}
			}
		})
	}
}

func TestCreateDevicesHeader(t *testing.T) {
	tests := []struct {
		header  []string
		wantErr string
	}{
		{[]string{"node_id", "product_id", "device_name", "secret", "timeout"}, ""},
		{[]string{"product_id", "node_id"}, ""},
		{[]string{"node_id", "produkt_id"}, `"produkt_id" is not one of the template's`},
		{[]string{"node_id", "product_id", "node_id"}, `"node_id" appears twice`},
		{[]string{"node_id", ""}, "column 2 is empty"},
		{[]string{"node_id", "device_name"}, `no "product_id" column`},
	}
	for _, tt := range tests {
		err := createDevices{}.CheckHeader(tt.header)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("header %q: got %v, want %q", tt.header, err, tt.wantErr)
		}
	}
}
