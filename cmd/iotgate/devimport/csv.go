// Package devimport creates devices in bulk from a CSV file through
// iotgate's IoTDA v5 REST API: it is a client of the API, like any other,
// and imports no adapter or engine.
package devimport

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Columns a CSV file may name in its header, in the order the README
// lists them. node_id and product_id are required.
var columns = []string{
	"node_id", "product_id", "device_id", "device_name", "description", "gateway_id",
	"auth_type", "secret", "fingerprint", "secure_access", "timeout", "tags", "extension_info",
}

// Row is one device to create: a CSV record with its values checked.
type Row struct {
	Line int // the file's line the record starts on (1 is the header)

	NodeID, ProductID                 string
	DeviceID, DeviceName, Description string
	GatewayID                         string
	AuthType, Secret, Fingerprint     string
	SecureAccess                      *bool  // nil: the API's default
	Timeout                           *int64 // nil: the API's default
	Tags                              []Tag
	ExtensionInfo                     json.RawMessage
}

// Tag is one of a device's tags (tags column: key=value;key2=value2).
type Tag struct{ Key, Value string }

// RowError is a CSV record that cannot become a Row: it names the line
// and, when one value is at fault, the column.
type RowError struct {
	Line   int
	Column string // "" when the record as a whole is malformed
	NodeID string // as far as it could be read, for the failures file
	Msg    string
}

func (e *RowError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("line %d: column %s: %s", e.Line, e.Column, e.Msg)
}

// HeaderError is a header the import cannot use: nothing is imported.
type HeaderError struct{ Msg string }

func (e *HeaderError) Error() string { return "CSV header: " + e.Msg }

// Reader reads Rows from a CSV file whose first record names the columns.
type Reader struct {
	r     *csv.Reader
	index map[string]int // column name -> field position
	width int
}

// NewReader reads the header of r and checks its column names: unknown,
// repeated and missing required columns are a *HeaderError.
func NewReader(r io.Reader) (*Reader, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // a short or long record is one row's failure, not the file's
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, &HeaderError{Msg: "the file is empty"}
	}
	if err != nil {
		return nil, &HeaderError{Msg: err.Error()}
	}
	known := make(map[string]bool, len(columns))
	for _, c := range columns {
		known[c] = true
	}
	index := make(map[string]int, len(header))
	for i, h := range header {
		name := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if !known[name] {
			return nil, &HeaderError{Msg: fmt.Sprintf("unknown column %q (columns: %s)", h, strings.Join(columns, ", "))}
		}
		if _, dup := index[name]; dup {
			return nil, &HeaderError{Msg: fmt.Sprintf("column %s named twice", name)}
		}
		index[name] = i
	}
	for _, req := range []string{"node_id", "product_id"} {
		if _, ok := index[req]; !ok {
			return nil, &HeaderError{Msg: "column " + req + " is required"}
		}
	}
	return &Reader{r: cr, index: index, width: len(header)}, nil
}

// Read returns the next row; a record that cannot be a row is a
// *RowError, after which Read goes on with the next record. It returns
// io.EOF at the end of the file.
func (r *Reader) Read() (Row, error) {
	for {
		rec, err := r.r.Read()
		if errors.Is(err, io.EOF) {
			return Row{}, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return Row{}, &RowError{Line: pe.StartLine, Msg: "malformed CSV: " + pe.Err.Error()}
		}
		if err != nil {
			return Row{}, fmt.Errorf("read CSV: %w", err)
		}
		line, _ := r.r.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // a blank line ends many files
		}
		return r.row(rec, line)
	}
}

func (r *Reader) row(rec []string, line int) (Row, error) {
	get := func(col string) string {
		if i, ok := r.index[col]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	row := Row{Line: line, NodeID: get("node_id"), ProductID: get("product_id")}
	fail := func(col, format string, a ...any) (Row, error) {
		return Row{}, &RowError{Line: line, Column: col, NodeID: row.NodeID, Msg: fmt.Sprintf(format, a...)}
	}
	if len(rec) != r.width {
		return fail("", "%d fields, the header names %d columns", len(rec), r.width)
	}
	if row.NodeID == "" {
		return fail("node_id", "is required")
	}
	if row.ProductID == "" {
		return fail("product_id", "is required")
	}
	row.DeviceID, row.DeviceName, row.Description = get("device_id"), get("device_name"), get("description")
	row.GatewayID, row.AuthType = get("gateway_id"), get("auth_type")
	row.Secret, row.Fingerprint = get("secret"), get("fingerprint")
	if v := get("secure_access"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fail("secure_access", "%q is not true or false", v)
		}
		row.SecureAccess = &b
	}
	if v := get("timeout"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fail("timeout", "%q is not a whole number of seconds", v)
		}
		row.Timeout = &n
	}
	if v := get("tags"); v != "" {
		tags, err := parseTags(v)
		if err != nil {
			return fail("tags", "%v", err)
		}
		row.Tags = tags
	}
	if v := get("extension_info"); v != "" {
		if !json.Valid([]byte(v)) || !strings.HasPrefix(v, "{") {
			return fail("extension_info", "is not a JSON object")
		}
		row.ExtensionInfo = json.RawMessage(v)
	}
	return row, nil
}

// parseTags reads key=value;key2=value2 (a value may be empty, a key not;
// a trailing ; is allowed).
func parseTags(s string) ([]Tag, error) {
	var tags []Tag
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case !ok:
			return nil, fmt.Errorf("%q is not key=value", part)
		case k == "":
			return nil, fmt.Errorf("%q has an empty key", part)
		case seen[k]:
			return nil, fmt.Errorf("key %q given twice", k)
		}
		seen[k] = true
		tags = append(tags, Tag{Key: k, Value: v})
	}
	return tags, nil
}
