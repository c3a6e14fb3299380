package activation

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/iotgate/iotgate/registry/regions"
)

// RegionClient is the centre's client of a region endpoint
// (NewRegionHandler); it implements regions.Region.
type RegionClient struct {
	base  string
	token string
	hc    *http.Client
}

var _ regions.Region = (*RegionClient)(nil)

// NewRegionClient returns a client of the region endpoint at base (e.g.
// "https://region-eu.example:9443"); hc nil means http.DefaultClient.
func NewRegionClient(base, token string, hc *http.Client) *RegionClient {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &RegionClient{base: strings.TrimSuffix(base, "/") + regionPrefix, token: token, hc: hc}
}

func devicePath(pk, dn string) string {
	return "devices/" + url.PathEscape(pk) + "/" + url.PathEscape(dn)
}

// do sends the request and decodes a 200 answer into out; an answer
// with a JSON error code becomes the matching domain error.
func (c *RegionClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxRegionBody))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK && out != nil:
		return json.Unmarshal(b, out)
	case resp.StatusCode/100 == 2:
		return nil
	}
	var e regionError
	if json.Unmarshal(b, &e) != nil || e.Code == 0 {
		return fmt.Errorf("%s %s: HTTP %d", method, path, resp.StatusCode)
	}
	switch e.Code {
	case codeBadParam:
		return &regions.ParamError{Param: e.Param, Reason: e.Message}
	case codeBadSign:
		return regions.ErrBadSign
	case codeNoDevice:
		return regions.ErrUnknownDevice
	case codeAuthType:
		return regions.ErrAuthType
	case codeOffline:
		return regions.ErrOffline
	}
	return fmt.Errorf("%s %s: code %d: %s", method, path, e.Code, e.Message)
}

// PreAuth implements regions.Region.
func (c *RegionClient) PreAuth(ctx context.Context, p regions.PreAuth) (regions.Grant, error) {
	var g regions.Grant
	err := c.do(ctx, http.MethodPost, "preauth", p, &g)
	return g, err
}

// Device implements regions.Region.
func (c *RegionClient) Device(ctx context.Context, pk, dn string) (regions.Held, error) {
	var h regions.Held
	err := c.do(ctx, http.MethodGet, devicePath(pk, dn), nil, &h)
	return h, err
}

// Export implements regions.Region.
func (c *RegionClient) Export(ctx context.Context, pk, dn string) (regions.Transfer, error) {
	var t regions.Transfer
	err := c.do(ctx, http.MethodGet, devicePath(pk, dn)+"/export", nil, &t)
	return t, err
}

// Import implements regions.Region.
func (c *RegionClient) Import(ctx context.Context, t regions.Transfer) error {
	return c.do(ctx, http.MethodPut, "devices", t, nil)
}

// Delete implements regions.Region.
func (c *RegionClient) Delete(ctx context.Context, pk, dn string) error {
	return c.do(ctx, http.MethodDelete, devicePath(pk, dn), nil, nil)
}

// NotifyBootstrap implements regions.Region.
func (c *RegionClient) NotifyBootstrap(ctx context.Context, pk, dn string, to *regions.Redirect) error {
	if to == nil {
		return c.do(ctx, http.MethodPost, devicePath(pk, dn)+"/notify", nil, nil)
	}
	return c.do(ctx, http.MethodPost, devicePath(pk, dn)+"/notify", to, nil)
}

// IssueToken implements regions.Region.
func (c *RegionClient) IssueToken(ctx context.Context, pk, dn string) (regions.Grant, error) {
	var g regions.Grant
	err := c.do(ctx, http.MethodPost, devicePath(pk, dn)+"/token", nil, &g)
	return g, err
}

// CheckLogin implements regions.Region.
func (c *RegionClient) CheckLogin(ctx context.Context, l regions.Login) (regions.Held, error) {
	var h regions.Held
	err := c.do(ctx, http.MethodPost, "login", l, &h)
	return h, err
}

// LwM2MDevice implements regions.Region.
func (c *RegionClient) LwM2MDevice(ctx context.Context, endpoint string) (regions.LwM2MAccount, error) {
	var a regions.LwM2MAccount
	err := c.do(ctx, http.MethodGet, "lwm2m/"+url.PathEscape(endpoint), nil, &a)
	return a, err
}
