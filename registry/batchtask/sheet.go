package batchtask

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/iotgate/iotgate/registry"
	"github.com/xuri/excelize/v2"
)

// Sheet is an uploaded file's table: its header (the first row, trimmed,
// lower-cased) and its data rows (empty rows skipped).
type Sheet struct {
	Header []string
	Rows   []SheetRow
}

// SheetRow is one data row and its line in the file (1-based, the
// header is line 1), for messages.
type SheetRow struct {
	Line   int
	Values []string
}

// Get returns the row's value in the named column ("" if absent).
func (s *Sheet) Get(r SheetRow, column string) string {
	for i, h := range s.Header {
		if h == column {
			if i < len(r.Values) {
				return strings.TrimSpace(r.Values[i])
			}
			return ""
		}
	}
	return ""
}

// unzipLimit bounds what an xlsx may expand to, whatever its size: a zip
// bomb is refused rather than decompressed.
const unzipLimit = 64 << 20

// ReadSheet reads a file's first worksheet: an xlsx workbook, or CSV when
// its name ends in .csv. It refuses (with a *registry.ValidationError
// naming the problem) a file that is neither, one without a header row,
// and one of more than maxRows data rows.
func ReadSheet(name string, content []byte, maxRows int) (*Sheet, error) {
	var next func() ([]string, error)
	if strings.HasSuffix(strings.ToLower(name), ".csv") {
		r := csv.NewReader(bytes.NewReader(content))
		r.FieldsPerRecord = -1
		next = func() ([]string, error) {
			rec, err := r.Read()
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, &registry.ValidationError{Field: "file", Reason: "is not valid CSV: " + err.Error()}
			}
			return rec, err
		}
	} else {
		f, err := excelize.OpenReader(bytes.NewReader(content), excelize.Options{UnzipSizeLimit: unzipLimit})
		if err != nil {
			return nil, &registry.ValidationError{Field: "file", Reason: "is not an xlsx workbook (or a .csv file): " + err.Error()}
		}
		defer f.Close()
		sheets := f.GetSheetList()
		if len(sheets) == 0 {
			return nil, &registry.ValidationError{Field: "file", Reason: "has no worksheet"}
		}
		rows, err := f.Rows(sheets[0])
		if err != nil {
			return nil, &registry.ValidationError{Field: "file", Reason: "worksheet " + sheets[0] + " cannot be read: " + err.Error()}
		}
		defer rows.Close()
		next = func() ([]string, error) {
			if !rows.Next() {
				if err := rows.Error(); err != nil {
					return nil, &registry.ValidationError{Field: "file", Reason: "worksheet " + sheets[0] + " cannot be read: " + err.Error()}
				}
				return nil, io.EOF
			}
			cols, err := rows.Columns()
			if err != nil {
				return nil, &registry.ValidationError{Field: "file", Reason: "worksheet " + sheets[0] + " cannot be read: " + err.Error()}
			}
			return cols, nil
		}
	}
	s := &Sheet{}
	for line := 1; ; line++ {
		rec, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if blank(rec) {
			continue
		}
		if s.Header == nil {
			for _, h := range rec {
				s.Header = append(s.Header, strings.ToLower(strings.TrimSpace(h)))
			}
			continue
		}
		if len(s.Rows) == maxRows {
			return nil, &registry.ValidationError{Field: "file", Reason: fmt.Sprintf("has more than %d rows, the limit of one batch task", maxRows)}
		}
		s.Rows = append(s.Rows, SheetRow{Line: line, Values: rec})
	}
	if s.Header == nil {
		return nil, &registry.ValidationError{Field: "file", Reason: "is empty: its first row must be the template's header"}
	}
	if len(s.Rows) == 0 {
		return nil, &registry.ValidationError{Field: "file", Reason: "has a header but no rows"}
	}
	return s, nil
}

func blank(rec []string) bool {
	for _, v := range rec {
		if strings.TrimSpace(v) != "" {
			return false
		}
	}
	return true
}

// checkColumns refuses a header with a column not in known, a column
// twice, or without one of required.
func checkColumns(header, known, required []string) error {
	seen := make(map[string]bool, len(header))
	for i, h := range header {
		switch {
		case h == "":
			return &registry.ValidationError{Field: "file", Reason: fmt.Sprintf("header column %d is empty", i+1)}
		case seen[h]:
			return &registry.ValidationError{Field: "file", Reason: fmt.Sprintf("header column %q appears twice", h)}
		case !slices.Contains(known, h):
			return &registry.ValidationError{Field: "file", Reason: fmt.Sprintf("header column %q is not one of the template's (%s)", h, strings.Join(known, ", "))}
		}
		seen[h] = true
	}
	for _, r := range required {
		if !seen[r] {
			return &registry.ValidationError{Field: "file", Reason: fmt.Sprintf("header has no %q column, which the template requires", r)}
		}
	}
	return nil
}
