package devimport

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// codeDeviceExists is IoTDA's answer to a device whose node_id (or
// device_id, or fingerprint) is taken.
const codeDeviceExists = "IOTDA.014031"

// APIError is the API's refusal of a request: IoTDA's error body.
type APIError struct {
	Status int
	Code   string `json:"error_code"`
	Msg    string `json:"error_msg"`
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d: %s", e.Status, e.Msg)
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Msg)
}

// ErrCredential is an answer that every row would get (the token or its
// project refused): the import stops.
var ErrCredential = errors.New("the API refused the credential")

// ErrUnreachable is a request that found no API after its retries: the
// import stops, since every row would wait out the same retries; a rerun
// resumes.
var ErrUnreachable = errors.New("the API cannot be reached")

// Outcome is what became of one row.
type Outcome int

const (
	Created Outcome = iota // the API created the device
	Existed                // the row's device (its id, holding its node) was already there
)

// client creates devices through POST /v5/iot/{project_id}/devices.
type client struct {
	http    *http.Client
	base    string // scheme://host[:port], no trailing slash
	project string
	token   string
	retries int           // attempts after the first for a transient failure
	backoff time.Duration // first wait between attempts; doubled each time
}

// newClient is the client o describes: o.HTTP, or one keeping a
// connection for each request in flight.
func newClient(o Options) *client {
	c := &client{http: o.HTTP, base: strings.TrimRight(o.API, "/"), project: o.Project, token: o.Token,
		retries: 5, backoff: cmp.Or(o.backoff, 200*time.Millisecond)}
	if c.http == nil {
		c.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: o.Concurrency, IdleConnTimeout: 30 * time.Second,
		}}
	}
	return c
}

// deviceBody is the request body (AddDevice).
type deviceBody struct {
	NodeID        string          `json:"node_id"`
	ProductID     string          `json:"product_id"`
	DeviceID      string          `json:"device_id,omitempty"`
	DeviceName    string          `json:"device_name,omitempty"`
	Description   string          `json:"description,omitempty"`
	GatewayID     string          `json:"gateway_id,omitempty"`
	AuthInfo      *authInfo       `json:"auth_info,omitempty"`
	Tags          []tagBody       `json:"tags,omitempty"`
	ExtensionInfo json.RawMessage `json:"extension_info,omitempty"`
}

type authInfo struct {
	AuthType     string `json:"auth_type,omitempty"`
	Secret       string `json:"secret,omitempty"`
	Fingerprint  string `json:"fingerprint,omitempty"`
	SecureAccess *bool  `json:"secure_access,omitempty"`
	Timeout      *int64 `json:"timeout,omitempty"`
}

type tagBody struct {
	Key   string `json:"tag_key"`
	Value string `json:"tag_value,omitempty"`
}

func body(r Row) deviceBody {
	b := deviceBody{
		NodeID: r.NodeID, ProductID: r.ProductID, DeviceID: r.DeviceID, DeviceName: r.DeviceName,
		Description: r.Description, GatewayID: r.GatewayID, ExtensionInfo: r.ExtensionInfo,
	}
	a := authInfo{AuthType: r.AuthType, Secret: r.Secret, Fingerprint: r.Fingerprint, SecureAccess: r.SecureAccess, Timeout: r.Timeout}
	if a != (authInfo{}) {
		b.AuthInfo = &a
	}
	for _, t := range r.Tags {
		b.Tags = append(b.Tags, tagBody(t))
	}
	return b
}

// create makes the row's device. A device that already holds the row's
// node_id in its product counts as done (Existed): that is what makes a
// rerun resume. Any other refusal is an *APIError; a refusal of the
// credential wraps ErrCredential.
func (c *client) create(ctx context.Context, r Row) (Outcome, error) {
	payload, err := json.Marshal(body(r))
	if err != nil {
		return 0, err
	}
	err = c.do(ctx, http.MethodPost, "/devices", payload, nil)
	var ae *APIError
	if errors.As(err, &ae) && ae.Code == codeDeviceExists {
		// The code also answers a taken device_id or fingerprint: only
		// the row's own device makes the row done.
		found, lerr := c.existing(ctx, r)
		if lerr != nil {
			return 0, fmt.Errorf("%w (and reading the device failed: %v)", err, lerr)
		}
		if found {
			return Existed, nil
		}
		return 0, err
	}
	if err != nil {
		return 0, err
	}
	return Created, nil
}

// existing says whether the row's device is there: the device at the
// row's device_id (default {product_id}_{node_id}, as the API names it)
// holds the row's node in the row's product. One read by id, whatever
// the product's size (the listing's node_id filter reads the product's
// devices: a rerun would be quadratic).
func (c *client) existing(ctx context.Context, r Row) (bool, error) {
	id := r.DeviceID
	if id == "" {
		id = r.ProductID + "_" + r.NodeID
	}
	var d struct {
		NodeID    string `json:"node_id"`
		ProductID string `json:"product_id"`
	}
	err := c.do(ctx, http.MethodGet, "/devices/"+url.PathEscape(id), nil, &d)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return d.NodeID == r.NodeID && d.ProductID == r.ProductID, nil
}

// preflight checks, before any row is sent, that the API answers and
// takes the credential for the project: a wrong URL, token or project is
// one error, not a failure per row.
func (c *client) preflight(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/products?limit=1", nil, nil)
}

// do sends one request, retrying transient failures (throttling, an
// unavailable store, a lost connection) with backoff, and decodes a 2xx
// answer into out (when not nil). A retried create that had committed
// comes back as IOTDA.014031 and is then found by its id: never twice.
func (c *client) do(ctx context.Context, method, path string, payload []byte, out any) error {
	wait := c.backoff
	for attempt := 0; ; attempt++ {
		retryAfter, err := c.once(ctx, method, path, payload, out)
		if err == nil || !transient(err) {
			return err
		}
		if attempt >= c.retries {
			var ae *APIError
			if !errors.As(err, &ae) {
				return fmt.Errorf("%w: %w", ErrUnreachable, err)
			}
			return err
		}
		d := max(wait, retryAfter)
		wait *= 2
		select {
		case <-ctx.Done():
			return err
		case <-time.After(d):
		}
	}
}

func (c *client) once(ctx context.Context, method, path string, payload []byte, out any) (time.Duration, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/v5/iot/"+url.PathEscape(c.project)+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Auth-Token", c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode/100 == 2 {
		if out != nil {
			if err := json.Unmarshal(raw, out); err != nil {
				return 0, fmt.Errorf("the answer is not JSON: %w", err)
			}
		}
		return 0, nil
	}
	ae := &APIError{Status: resp.StatusCode}
	if json.Unmarshal(raw, ae) != nil || ae.Code == "" {
		ae.Msg = strings.TrimSpace(string(raw))
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return 0, fmt.Errorf("%w: %w", ErrCredential, ae)
	}
	secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return time.Duration(secs) * time.Second, ae
}

// transient says whether a failure may pass if the request is sent again.
func transient(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusTooManyRequests || ae.Status == http.StatusServiceUnavailable ||
			ae.Status == http.StatusBadGateway || ae.Status == http.StatusGatewayTimeout
	}
	// Not an answer: the connection failed or timed out. A cancelled
	// import does not retry.
	return !errors.Is(err, context.Canceled) && !errors.Is(err, ErrCredential)
}
