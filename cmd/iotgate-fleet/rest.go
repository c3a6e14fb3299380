package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// restClient calls the IoTDA v5 REST API with an X-Auth-Token.
type restClient struct {
	base    string // http://host:port/v5/iot/{project}
	token   string
	http    *http.Client
	timeout time.Duration
}

func newRESTClient(api, project, token string, conns int, timeout time.Duration) *restClient {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
	}
	return &restClient{base: api + "/v5/iot/" + project, token: token, http: &http.Client{Transport: tr}, timeout: timeout}
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

// do sends a JSON request; it decodes a JSON answer into out when the
// status is want.
func (c *restClient) do(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("X-Auth-Token", c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		var e struct {
			Code string `json:"error_code"`
		}
		_ = json.Unmarshal(raw, &e)
		return &apiError{status: resp.StatusCode, code: e.Code}
	}
	if out != nil && len(raw) > 0 {
		return json.Unmarshal(raw, out)
	}
	return nil
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
	return c.do(ctx, http.MethodPost, "/devices", map[string]any{
		"node_id": ids.nodeID(proto, i), "product_id": ids.product(proto),
		"auth_info": map[string]any{"secret": ids.secret(id), "secure_access": proto == protoMQTTS || proto == protoDTLS},
	}, http.StatusCreated, nil)
}

func (c *restClient) deleteDevice(ctx context.Context, ids identities, proto string, i int) error {
	return c.do(ctx, http.MethodDelete, "/devices/"+ids.deviceID(proto, i), nil, http.StatusNoContent, nil)
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
		err := c.do(ctx, http.MethodPost, "/devices/"+id+"/commands", map[string]any{
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
	err := c.do(ctx, http.MethodPost, "/devices/"+id+"/async-commands", map[string]any{
		"service_id": "LwM2M", "command_name": "READ", "paras": map[string]any{"path": "/3/0/0"},
		"send_strategy": "immediately",
	}, http.StatusCreated, &cmd)
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(c.timeout); ; {
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
		if err := c.do(ctx, http.MethodGet, "/devices/"+id+"/async-commands/"+cmd.CommandID, nil, http.StatusOK, &cmd); err != nil {
			return err
		}
	}
}
