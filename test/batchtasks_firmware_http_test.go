package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
)

// TestBatchFirmwareUpgradeHTTP: a device whose object 5 declares
// /5/0/8 = [2] (HTTP 1.1 only) is upgraded by a firmwareUpgrade task
// from the plain API listener (coap.firmware.http_url = g.API); see
// firmwareHTTPPull. A device that declares HTTPS only is refused that
// http URL.
func TestBatchFirmwareUpgradeHTTP(t *testing.T) {
	g := startLwM2MGateWith(t, func(g *Gate) string { return fmt.Sprintf("  firmware:\n    http_url: %q\n", g.API) })
	firmwareHTTPPull(t, g, firmwarePull{node: "fwh", base: g.API, protocol: 2, client: &http.Client{Timeout: time.Minute},
		refused: 3, refusal: "supports only HTTPS download (/5/0/8 lists [3]) and coap.firmware.http_url is an http URL, not https"})
}

// TestBatchFirmwareUpgradeHTTPS: the same over the gate's HTTPS API
// listener (coap.firmware.http_url = g.APIS) with the certificate iotgate
// generates: a device declaring HTTPS 1.1 only (/5/0/8 = [3]) and
// trusting only the generated CA downloads, and so does curl given that
// CA, while curl and Go's default client, which do not trust it, are
// refused the handshake. A device declaring plain HTTP only is refused
// the https URL.
func TestBatchFirmwareUpgradeHTTPS(t *testing.T) {
	g := startLwM2MGateWith(t, func(g *Gate) string { return fmt.Sprintf("  firmware:\n    http_url: %q\n", g.APIS) })
	tr := &http.Transport{TLSClientConfig: g.tlsConfig()} // RootCAs: the generated CA and nothing else
	t.Cleanup(tr.CloseIdleConnections)
	firmwareHTTPPull(t, g, firmwarePull{node: "fws", base: g.APIS, protocol: 3,
		client: &http.Client{Transport: tr, Timeout: time.Minute}, cacert: filepath.Join(g.DataDir, "data", "tls", "ca.pem"),
		refused: 2, refusal: "supports only plain HTTP download (/5/0/8 lists [2]) and coap.firmware.http_url is an https URL"})
}

// firmwarePull is what an HTTP(S) pull run varies.
type firmwarePull struct {
	node     string       // the downloading device's node id; the refused one's is node+"-refused"
	base     string       // coap.firmware.http_url
	protocol int          // the device's /5/0/8: 2 (HTTP 1.1) or 3 (HTTPS 1.1)
	client   *http.Client // the device's, and this test's own requests
	// cacert is the CA file curl is given; when set, curl without it
	// must fail certificate verification.
	cacert string
	// refused is the only protocol another device lists, one base does
	// not serve; refusal is what its failed item must say.
	refused int
	refusal string
}

// pullDevice creates a device and its Go LwM2M client, not yet
// registered, whose object 5 lists only protocol in /5/0/8 and
// downloads with client.
func pullDevice(t *testing.T, g *Gate, node string, protocol int, client *http.Client) (string, *lwm2mclient.Client, *lwm2mclient.Firmware) {
	t.Helper()
	id := lwm2mDevice(t, g, node, false, nil)
	c := goClient(t, g, lwm2mclient.Config{Endpoint: node, Lifetime: 60})
	fw := lwm2mclient.NewFirmware(c, 0)
	fw.SetProtocols(protocol)
	fw.HTTP = client
	fw.SZX = 6 // 1024-byte reads
	return id, c, fw
}

// firmwareHTTPPull runs a firmwareUpgrade task for a device that pulls
// over p.base's scheme. First a device listing only p.refused fails
// with p.refusal and is written no Package URI. Then iotgate writes the
// pulling device a Package URI on p.base, which it downloads without an
// API credential; interrupted after two blocks, it resumes with a Range
// request, while curl fetches a range of the same URI. The device
// reports State 2, iotgate executes Update, Update Result 1 ends the
// item in Success, and the URI then answers 404.
func firmwareHTTPPull(t *testing.T, g *Gate, p firmwarePull) {
	img := bytes.Repeat([]byte("iotgate http firmware "), 400) // 8,800 bytes: 9 blocks of 1024
	pkg := g.uploadPackage(http.StatusCreated, map[string]any{"package_type": "firmwarePackage", "product_id": "nb", "version": "2.1"}, img)["package_id"].(string)

	bad, badc, _ := pullDevice(t, g, p.node+"-refused", p.refused, p.client)
	id, c, fw := pullDevice(t, g, p.node, p.protocol, p.client)
	fw.StopAfter(2)
	for _, c := range []*lwm2mclient.Client{badc, c} {
		if err := c.Register(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	task, err := createFirmwareTask(t, g, p.node+"_refused", pkg, []string{bad})
	if err != nil {
		t.Fatalf("CreateBatchTask: %v", err)
	}
	if tk, details := waitFirmwareTask(t, g, task); *tk.Status != "Fail" || details[bad].Error == nil ||
		!strings.Contains(*details[bad].Error.ErrorMsg, p.refusal) {
		t.Fatalf("the device listing only %d: task %s, item %+v %+v; want it failed with %q",
			p.refused, *tk.Status, details[bad], details[bad].Error, p.refusal)
	}
	if v, _ := badc.Value("/5/0/1"); v.Str() != "" {
		t.Fatalf("the refused device was written the Package URI %q", v.Str())
	}

	task, err = createFirmwareTask(t, g, p.node, pkg, []string{id})
	if err != nil {
		t.Fatalf("CreateBatchTask: %v", err)
	}
	waitFor(t, 30*time.Second, "the device's first two blocks", func() bool { _, b := fw.Image(); return len(b) == 2 })
	v, _ := c.Value("/5/0/1")
	uri := v.Str()
	if !strings.HasPrefix(uri, p.base+"/fw/") {
		t.Fatalf("Package URI %q, want one under %s/fw/", uri, p.base)
	}

	// While the URI is live, so that the handshake is all that refuses
	// them: clients that do not trust the CA get no package.
	if p.cacert != "" {
		var unknown x509.UnknownAuthorityError
		if resp, err := http.Get(uri); !errors.As(err, &unknown) {
			if err == nil {
				resp.Body.Close()
			}
			t.Fatalf("Go's default client, without the gate's CA: %v, want an unknown authority", err)
		}
	}
	// curl, a client nobody here wrote, resumes the same URI mid-file.
	t.Run("curl", func(t *testing.T) {
		curl := interopTool(t, "curl", "apt-get install curl (listed in .ci/packages)")
		out := filepath.Join(t.TempDir(), "part")
		args := []string{"--silent", "--show-error", "--range", "1000-2999", "--output", out, "--write-out", "%{http_code} %{content_type}", uri}
		if p.cacert != "" {
			// curl's exit code 60: the peer's certificate did not verify.
			res, err := exec.Command(curl, args...).CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 60 || !strings.Contains(string(res), "certificate") {
				t.Fatalf("curl without --cacert: %v: %s; want exit 60, certificate verification failed", err, res)
			}
			args = append([]string{"--cacert", p.cacert}, args...)
		}
		res, err := exec.Command(curl, args...).CombinedOutput()
		if err != nil || string(res) != "206 application/octet-stream" {
			t.Fatalf("curl --range: %v: %s", err, res)
		}
		if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, img[1000:3000]) {
			t.Fatalf("curl's range is not bytes 1000-2999 of the package (%d bytes, %v)", len(got), err)
		}
	})

	fw.Resume()
	tk, details := waitFirmwareTask(t, g, task)
	if det := details[id]; *tk.Status != "Success" || *det.Status != "Success" || det.Output == nil ||
		!strings.Contains(*det.Output, "version 2.1 installed") {
		t.Fatalf("task %s, item %+v %+v", *tk.Status, det, det.Error)
	}
	if fw.Sum() != sha256.Sum256(img) {
		t.Fatal("the device's image is not the package")
	}
	if r := fw.HTTPRanges(); !slices.Equal(r, []int64{0, 2048}) {
		t.Fatalf("the device's GETs started at bytes %v, want 0, then 2048 (the resume)", r)
	}
	resp, err := p.client.Get(uri)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the Package URI after the item ended: %d, want 404", resp.StatusCode)
	}
}
