package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// Stored events are encoded by hand rather than by encoding/json's
// reflection: every create, uplink and status change writes one, and the
// reflective encoder was the largest registry entry in a create's
// profile (BENCHMARKS.md). The output is byte for byte what json.Marshal
// gives for the same values (eventjson_test.go checks it, and fuzzes it),
// so readers decode it with encoding/json as before.

// appendEventRecord appends rec in its stored JSON form: storedEvent's
// fields, or with compact compactEvent's (no id and time, which the
// record's head holds, and no header when headerInBody: a device event's
// header is its body's fields). A body of a type without its own encoder
// here is encoded with encoding/json.
func appendEventRecord(b []byte, rec *eventRecord, compact, headerInBody bool) ([]byte, error) {
	var err error
	if compact {
		b = append(b, `{"resource":`...)
	} else {
		b = append(b, `{"id":`...)
		b = appendJSONString(b, rec.ID)
		b = append(b, `,"time":`...)
		if b, err = appendJSONTime(b, rec.Time); err != nil {
			return nil, err
		}
		b = append(b, `,"resource":`...)
	}
	b = appendJSONString(b, rec.Resource)
	b = append(b, `,"event":`...)
	b = appendJSONString(b, rec.Event)
	if !compact || !headerInBody {
		b = append(b, `,"header":`...)
		b = rec.Header.appendJSON(b)
	}
	b = append(b, `,"body":`...)
	switch body := rec.Body.(type) {
	case *deviceEventBody:
		if b, err = body.appendJSON(b); err != nil {
			return nil, err
		}
	default:
		js, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		b = append(b, js...)
	}
	return append(b, '}'), nil
}

func (h *EventHeader) appendJSON(b []byte) []byte {
	b = append(b, `{"app_id":`...)
	b = appendJSONString(b, h.AppID)
	b = append(b, `,"device_id":`...)
	b = appendJSONString(b, h.DeviceID)
	b = append(b, `,"node_id":`...)
	b = appendJSONString(b, h.NodeID)
	b = append(b, `,"product_id":`...)
	b = appendJSONString(b, h.ProductID)
	b = append(b, `,"gateway_id":`...)
	b = appendJSONString(b, h.GatewayID)
	b = append(b, `,"tags":`...)
	b = appendEventTags(b, h.Tags)
	return append(b, '}')
}

func appendEventTags(b []byte, tags []EventTag) []byte {
	if tags == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, t := range tags {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"tag_key":`...)
		b = appendJSONString(b, t.Key)
		b = append(b, `,"tag_value":`...)
		b = appendJSONString(b, t.Value)
		b = append(b, '}')
	}
	return append(b, ']')
}

func (d *deviceEventBody) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"app_id":`...)
	b = appendJSONString(b, d.AppID)
	b = append(b, `,"device_id":`...)
	b = appendJSONString(b, d.DeviceID)
	b = append(b, `,"node_id":`...)
	b = appendJSONString(b, d.NodeID)
	b = append(b, `,"gateway_id":`...)
	b = appendJSONString(b, d.GatewayID)
	if d.DeviceName != "" {
		b = append(b, `,"device_name":`...)
		b = appendJSONString(b, d.DeviceName)
	}
	if d.Description != "" {
		b = append(b, `,"description":`...)
		b = appendJSONString(b, d.Description)
	}
	b = append(b, `,"product_id":`...)
	b = appendJSONString(b, d.ProductID)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, string(d.Status))
	b = append(b, `,"create_time":`...)
	b = appendJSONString(b, d.CreateTime)
	if d.ActiveTime != "" {
		b = append(b, `,"active_time":`...)
		b = appendJSONString(b, d.ActiveTime)
	}
	b = append(b, `,"auth_info":{"auth_type":`...)
	b = appendJSONString(b, string(d.AuthInfo.AuthType))
	b = append(b, `,"secure_access":`...)
	if d.AuthInfo.SecureAccess {
		b = append(b, "true"...)
	} else {
		b = append(b, "false"...)
	}
	if d.AuthInfo.Timeout != nil {
		b = append(b, `,"timeout":`...)
		b = strconv.AppendInt(b, *d.AuthInfo.Timeout, 10)
	}
	b = append(b, '}')
	if len(d.ExtensionInfo) > 0 {
		// As json.Marshal does with a RawMessage: validated, compacted,
		// and <, > and & escaped.
		b = append(b, `,"extension_info":`...)
		var buf bytes.Buffer
		if err := json.Compact(&buf, d.ExtensionInfo); err != nil {
			return nil, fmt.Errorf("extension_info: %w", err)
		}
		n := len(b)
		b = append(b, buf.Bytes()...)
		if bytes.ContainsAny(b[n:], "<>&\u2028\u2029") {
			buf.Reset()
			json.HTMLEscape(&buf, b[n:])
			b = append(b[:n], buf.Bytes()...)
		}
	}
	b = append(b, `,"tags":`...)
	b = appendEventTags(b, d.Tags)
	return append(b, '}'), nil
}

// appendJSONTime appends t as time.Time's MarshalJSON does (RFC 3339
// with nanoseconds, quoted), refusing the same years it refuses.
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y >= 10000 {
		return nil, fmt.Errorf("event time %v: year outside [0,9999]", t)
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// appendJSONString appends s quoted as encoding/json quotes it: control
// characters escaped, <, > and & escaped for HTML, invalid UTF-8 replaced
// by U+FFFD, and U+2028 and U+2029 escaped for JavaScript.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
