package api

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

// decode reads a JSON body into v. Syntax errors are IOTDA.000008, a value
// of the wrong type IOTDA.000006 naming the field. Unknown fields are
// ignored, as IoTDA does (SDKs send fields we do not model, e.g. app_id).
func decode(c echo.Context, v any) error { return decodeBody(c, v, true) }

// decodeOptional is decode for actions whose body may be empty.
func decodeOptional(c echo.Context, v any) error { return decodeBody(c, v, false) }

func decodeBody(c echo.Context, v any, required bool) error {
	body, ok := c.Get(bodyKey).([]byte)
	if !ok { // only authenticate reads bodies (bounded)
		return errors.New("api: request body decoded on a route without authenticate")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if !required {
			return nil
		}
		return &apiError{Status: http.StatusBadRequest, Code: codeBadFormat, Msg: "request body is required"}
	}
	err := json.Unmarshal(body, v)
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		return badInput("invalid %s: must be a JSON %s", te.Field, te.Type.String())
	case errors.As(err, &se):
		return &apiError{Status: http.StatusBadRequest, Code: codeBadFormat, Msg: "request body is not valid JSON: " + se.Error()}
	default:
		return badInput("invalid request body: %v", err)
	}
}

// page reads IoTDA's limit (1–50, default 10), marker (24 hex) and offset
// (0–500).
func page(c echo.Context) (registry.Page, error) {
	p := registry.Page{Limit: 10}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 50 {
			return p, &apiError{Status: http.StatusBadRequest, Code: codeLimitRange, Msg: "invalid limit: must be an integer from 1 to 50"}
		}
		p.Limit = n
	}
	if v := c.QueryParam("marker"); v != "" {
		if _, err := hex.DecodeString(v); err != nil || len(v) != 24 {
			return p, badInput("invalid marker: must be 24 hexadecimal characters")
		}
		if v != "ffffffffffffffffffffffff" {
			p.Marker = v
		}
	}
	if v := c.QueryParam("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 500 {
			return p, badInput("invalid offset: must be an integer from 0 to 500")
		}
		p.Offset = n
	}
	return p, nil
}

type pageInfo struct {
	Count  int64  `json:"count"`
	Marker string `json:"marker,omitempty"`
}

// IoTDA's two timestamp formats.
const (
	compactTime = "20060102T150405Z"
	isoTime     = "2006-01-02T15:04:05.000Z"
)

func compact(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(compactTime)
}

func iso(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(isoTime)
}

// checkLen is a length check for fields validated only here.
func checkLen(field, v string, max int) error {
	if len(v) > max {
		return badInput("invalid %s: must be at most %d characters", field, max)
	}
	return nil
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// newID returns a random 32-hex id for commands and messages.
func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
