package lwm2m_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/guard"
)

// httpGet sends method to url with the headers (name, value pairs) and
// returns the status, headers and body.
func httpGet(t *testing.T, method, url string, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

// firmwareHTTP starts a fixture whose firmware.HTTPURL is an HTTP server
// of its FirmwareHTTP handler, and returns the fixture and the URL.
func firmwareHTTP(t *testing.T) (*fixture, string) {
	ts := httptest.NewUnstartedServer(nil)
	base := "http://" + ts.Listener.Addr().String()
	f := newFixture(t, func(o *lwm2m.Options) { o.Firmware.HTTPURL = base })
	ts.Config.Handler = f.srv.FirmwareHTTP()
	ts.Start()
	t.Cleanup(ts.Close)
	return f, base
}

// TestFirmwareHTTPPull: a device whose /5/0/8 lists HTTP only is given
// {http_url}/fw/{token}; the handler serves the package whole, by Range
// and to HEAD, with the package's SHA-256 as ETag, while the device
// downloads; the device, interrupted after three blocks, resumes with a
// Range from the first byte it lacks and the item ends in Success, after
// which the token serves nothing. An unknown token gets the same 404.
func TestFirmwareHTTPPull(t *testing.T) {
	f, base := firmwareHTTP(t)
	d := f.device("fwh1", false)
	c := f.client(lwm2mclient.Config{Endpoint: "fwh1"})
	fw := lwm2mclient.NewFirmware(c, 0)
	fw.SetProtocols(2)
	fw.SZX = 4 // 256-byte blocks
	fw.StopAfter(3)
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	img := firmwareImage(3000)
	sum := sha256.Sum256(img)
	job := f.upgrade(img, "v7", d.DeviceID)
	eventually(t, "three blocks downloaded", func() bool { _, blocks := fw.Image(); return len(blocks) == 3 })
	if it := f.item(job, d.DeviceID); it.Step != registry.StepDownloading {
		t.Fatalf("item mid-download: %+v", it)
	}
	v, _ := c.Value("/5/0/1")
	uri := v.Str()
	if !strings.HasPrefix(uri, base+"/fw/") || len(uri) < len(base)+4+32 {
		t.Fatalf("Package URI %q, want %s/fw/{token}", uri, base)
	}

	code, h, body := httpGet(t, http.MethodGet, uri)
	etag := `"` + hex.EncodeToString(sum[:]) + `"`
	if code != http.StatusOK || !bytes.Equal(body, img) || h.Get("Content-Type") != "application/octet-stream" ||
		h.Get("ETag") != etag || h.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("GET: %d %v, %d bytes", code, h, len(body))
	}
	code, h, body = httpGet(t, http.MethodGet, uri, "Range", "bytes=1000-1499")
	if code != http.StatusPartialContent || !bytes.Equal(body, img[1000:1500]) || h.Get("Content-Range") != "bytes 1000-1499/3000" {
		t.Fatalf("Range GET: %d %v, %d bytes", code, h, len(body))
	}
	// A resume against another file (ETag) gets the whole file.
	code, _, body = httpGet(t, http.MethodGet, uri, "Range", "bytes=1000-", "If-Range", `"0123"`)
	if code != http.StatusOK || !bytes.Equal(body, img) {
		t.Fatalf("If-Range of another ETag: %d, %d bytes", code, len(body))
	}
	code, h, body = httpGet(t, http.MethodHead, uri)
	if code != http.StatusOK || len(body) != 0 || h.Get("Content-Length") != "3000" || h.Get("ETag") != etag {
		t.Fatalf("HEAD: %d %v, %d bytes", code, h, len(body))
	}
	if code, h, _ = httpGet(t, http.MethodPost, uri); code != http.StatusMethodNotAllowed || h.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST: %d %v", code, h)
	}
	code, _, unknown := httpGet(t, http.MethodGet, base+"/fw/"+strings.Repeat("a", 32))
	if code != http.StatusNotFound {
		t.Fatalf("unknown token: %d", code)
	}

	fw.Resume()
	if it := f.waitItem(t, job, d.DeviceID, registry.FirmwareSuccess); it.Result != 1 {
		t.Fatalf("item %+v", it)
	}
	got, blocks := fw.Image()
	if !bytes.Equal(got, img) || len(blocks) != 12 {
		t.Fatalf("downloaded %d bytes in blocks %v", len(got), blocks)
	}
	if r := fw.HTTPRanges(); !slices.Equal(r, []int64{0, 768}) {
		t.Fatalf("GETs from bytes %v, want the whole file, then a resume from byte 768", r)
	}
	code, _, body = httpGet(t, http.MethodGet, uri)
	if code != http.StatusNotFound || !bytes.Equal(body, unknown) {
		t.Fatalf("the token after the item ended: %d %q, want the unknown token's 404 %q", code, body, unknown)
	}
}

// TestFirmwareHTTPRefused: a device that downloads by HTTP(S) only fails
// with the reason when the URL cannot serve it, and is written no URI;
// one that lists CoAP as well still gets the CoAP URI.
func TestFirmwareHTTPRefused(t *testing.T) {
	f := newFixture(t, nil) // no HTTPURL
	ctx := context.Background()
	only, both := f.device("fwh2", false), f.device("fwh3", false)
	c1 := f.client(lwm2mclient.Config{Endpoint: "fwh2"})
	lwm2mclient.NewFirmware(c1, 0).SetProtocols(2, 3)
	c2 := f.client(lwm2mclient.Config{Endpoint: "fwh3"})
	fw2 := lwm2mclient.NewFirmware(c2, 0)
	fw2.SetProtocols(3, 0)
	for _, c := range []*lwm2mclient.Client{c1, c2} {
		if err := c.Register(ctx); err != nil {
			t.Fatal(err)
		}
	}
	job := f.upgrade(firmwareImage(500), "v8", only.DeviceID, both.DeviceID)
	it := f.waitItem(t, job, only.DeviceID, registry.FirmwareFail)
	if !strings.Contains(it.StatusDesc, "supports only HTTP(S) download (/5/0/8 lists [2 3]) and coap.firmware.http_url is not set") {
		t.Fatalf("item %+v", it)
	}
	if v, _ := c1.Value("/5/0/1"); v.Str() != "" {
		t.Fatalf("written Package URI %q", v.Str())
	}
	f.waitItem(t, job, both.DeviceID, registry.FirmwareSuccess)
	if v, _ := c2.Value("/5/0/1"); !strings.HasPrefix(v.Str(), "coap://") {
		t.Fatalf("Package URI %q", v.Str())
	}
}

// TestFirmwareHTTPSPull: a device that lists HTTPS only downloads from
// an https http_url; an address on the shared ban list is refused the
// download (403) until its ban is lifted.
func TestFirmwareHTTPSPull(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil)
	base := "https://" + ts.Listener.Addr().String()
	g := guard.NewLocal(guard.Defaults())
	f := newFixture(t, func(o *lwm2m.Options) { o.Firmware.HTTPURL = base + "/"; o.Guard = g })
	ts.Config.Handler = f.srv.FirmwareHTTP()
	ts.StartTLS()
	t.Cleanup(ts.Close)
	d := f.device("fwh4", false)
	c := f.client(lwm2mclient.Config{Endpoint: "fwh4"})
	fw := lwm2mclient.NewFirmware(c, 0)
	fw.SetProtocols(3)
	fw.HTTP = ts.Client()
	fw.StopAfter(1)
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	img := firmwareImage(2000)
	job := f.upgrade(img, "v9", d.DeviceID)
	eventually(t, "the first block", func() bool { _, blocks := fw.Image(); return len(blocks) == 1 })
	v, _ := c.Value("/5/0/1")
	if !strings.HasPrefix(v.Str(), base+"/fw/") {
		t.Fatalf("Package URI %q, want %s/fw/{token}", v.Str(), base)
	}
	ban := guard.AddressTarget(netip.MustParseAddr("127.0.0.1"))
	if err := g.Ban(context.Background(), guard.Ban{Target: ban, Reason: "test", Source: guard.SourceManual}); err != nil {
		t.Fatal(err)
	}
	resp, err := ts.Client().Get(v.Str())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("banned address: %d, want 403", resp.StatusCode)
	}
	if err := g.Unban(context.Background(), ban); err != nil {
		t.Fatal(err)
	}
	fw.Resume()
	f.waitItem(t, job, d.DeviceID, registry.FirmwareSuccess)
	if got, _ := fw.Image(); !bytes.Equal(got, img) {
		t.Fatal("image differs")
	}
}
