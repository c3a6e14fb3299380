package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// restClient calls the IoTDA v5 REST API with an X-Auth-Token.
type restClient struct {
	prefix  string   // /v5/iot/{project}
	headers []string // X-Auth-Token, then Content-Type (only with a body): name, value pairs
	conns   *httpConns
}

func newRESTClient(api, project, token string, conns int, timeout time.Duration) (*restClient, error) {
	u, err := url.Parse(api)
	if err != nil {
		return nil, fmt.Errorf("-api: %w", err)
	}
	if u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("-api %q: want http://host:port (iotgate's API speaks plain HTTP)", api)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	return &restClient{prefix: "/v5/iot/" + url.PathEscape(project),
		headers: []string{"X-Auth-Token", token, "Content-Type", "application/json"},
		conns:   newHTTPConns(host, conns, timeout)}, nil
}

// apiError is an answer other than the one expected.
type apiError struct {
	status int
	code   string // IoTDA error_code, if any
}

func (e *apiError) Error() string {
	if e.code != "" {
		return fmt.Sprintf("HTTP %d %s", e.status, e.code)
	}
	return fmt.Sprintf("HTTP %d", e.status)
}

// do sends a request with a JSON body (body is encoded unless it is
// already JSON bytes); it decodes a JSON answer into out when the status
// is want.
func (c *restClient) do(ctx context.Context, method, path string, body any, want int, out any) error {
	var raw []byte
	headers := c.headers[:2]
	switch b := body.(type) {
	case nil:
	case []byte:
		raw, headers = b, c.headers
	default:
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return err
		}
		headers = c.headers
	}
	return c.conns.do(ctx, method, c.prefix+path, headers, raw, func(a httpAnswer) error {
		if a.Status != want {
			var e struct {
				Code string `json:"error_code"`
			}
			_ = json.Unmarshal(a.Body, &e)
			return &apiError{status: a.Status, code: e.Code}
		}
		if out != nil && len(a.Body) > 0 {
			return json.Unmarshal(a.Body, out)
		}
		return nil
	})
}

// ensureProduct creates a protocol's product unless it exists.
func (c *restClient) ensureProduct(ctx context.Context, id, protocolType string) error {
	err := c.do(ctx, http.MethodPost, "/products", map[string]any{
		"product_id": id, "name": id, "device_type": "FleetSimulator", "protocol_type": protocolType,
		"data_format": "json", "service_capabilities": []any{map[string]any{"service_id": "Fleet", "service_type": "Fleet"}},
	}, http.StatusCreated, nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.code == "IOTDA.013031" { // product_id taken
		return nil
	}
	return err
}

// forEach runs fn for devices [0, n) from conns goroutines and records
// each call; progress counts them.
func forEach(ctx context.Context, n, conns int, s *samples, ok, failed *atomic.Int64, fn func(ctx context.Context, i int) error) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range max(1, conns) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t := time.Now()
				err := fn(ctx, i)
				s.record(t, err)
				if err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// createDevice creates device i of a protocol with its derived secret.
// secure_access is what the protocol needs: true for MQTTS and DTLS.
func (c *restClient) createDevice(ctx context.Context, ids identities, proto string, i int) error {
	id := ids.deviceID(proto, i)
	// Written by hand rather than with encoding/json: this is the storm's
	// request, and the fleet's CPU is taken from the server's.
	b := make([]byte, 0, 192)
	b = append(b, `{"node_id":`...)
	b = appendJSONString(b, ids.nodeID(proto, i))
	b = append(b, `,"product_id":`...)
	b = appendJSONString(b, ids.product(proto))
	b = append(b, `,"auth_info":{"secret":`...)
	b = appendJSONString(b, ids.secret(id))
	b = append(b, `,"secure_access":`...)
	b = strconv.AppendBool(b, proto == protoMQTTS || proto == protoDTLS)
	b = append(b, "}}"...)
	return c.do(ctx, http.MethodPost, "/devices", b, http.StatusCreated, nil)
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '"' || ch == '\\':
			b = append(b, '\\', ch)
		case ch < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[ch>>4], hex[ch&0xf])
		default: // UTF-8 passes through: JSON text is UTF-8
			b = append(b, ch)
		}
	}
	return append(b, '"')
}

func (c *restClient) deleteDevice(ctx context.Context, ids identities, proto string, i int) error {
	return c.do(ctx, http.MethodDelete, "/devices/"+url.PathEscape(ids.deviceID(proto, i)), nil, http.StatusNoContent, nil)
}

// command sends one command to device i and waits for its answer: a
// synchronous command for MQTT, an immediate asynchronous READ of the
// device's manufacturer for LwM2M (polled until final).
func (c *restClient) command(ctx context.Context, ids identities, proto string, i int) error {
	id := ids.deviceID(proto, i)
	if !isLwM2M(proto) {
		var out struct {
			ErrorCode string          `json:"error_code"`
			Response  json.RawMessage `json:"response"`
		}
		err := c.do(ctx, http.MethodPost, "/devices/"+url.PathEscape(id)+"/commands", map[string]any{
			"service_id": "Fleet", "command_name": "ping", "paras": map[string]any{"n": rand.IntN(1000)},
		}, http.StatusOK, &out)
		if err != nil {
			return err
		}
		if out.ErrorCode != "" {
			return &apiError{status: http.StatusOK, code: out.ErrorCode}
		}
		return nil
	}
	var cmd struct {
		CommandID string `json:"command_id"`
		Status    string `json:"status"`
	}
	err := c.do(ctx, http.MethodPost, "/devices/"+url.PathEscape(id)+"/async-commands", map[string]any{
		"service_id": "LwM2M", "command_name": "READ", "paras": map[string]any{"path": "/3/0/0"},
		"send_strategy": "immediately",
	}, http.StatusCreated, &cmd)
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(c.conns.timeout); ; {
		switch cmd.Status {
		case "SUCCESSFUL":
			return nil
		case "FAILED", "TIMEOUT", "EXPIRED", "CANCELED":
			return fmt.Errorf("command %s", cmd.Status)
		}
		if time.Now().After(deadline) {
			return context.DeadlineExceeded
		}
		time.Sleep(10 * time.Millisecond)
		if err := c.do(ctx, http.MethodGet, "/devices/"+url.PathEscape(id)+"/async-commands/"+cmd.CommandID, nil, http.StatusOK, &cmd); err != nil {
			return err
		}
	}
}
