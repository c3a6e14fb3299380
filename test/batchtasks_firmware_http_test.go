package test

import (
	"bytes"
	"context"
	"crypto/sha256"
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
// /5/0/8 = [2] (HTTP 1.1 only) is upgraded by a firmwareUpgrade task.
// iotgate writes a Package URI on its API listener
// (coap.firmware.http_url), the device downloads it over HTTP without an
// API credential, is interrupted after two blocks and resumes with a
// Range request; meanwhile curl fetches a range of the same URI. The
// device reports State 2, iotgate executes Update, Update Result 1 ends
// the item in Success, and the URI then answers 404.
func TestBatchFirmwareUpgradeHTTP(t *testing.T) {
	g := startLwM2MGateWith(t, func(g *Gate) string { return fmt.Sprintf("  firmware:\n    http_url: %q\n", g.API) })
	img := bytes.Repeat([]byte("iotgate http firmware "), 400) // 8,800 bytes: 9 blocks of 1024
	pkg := g.uploadPackage(http.StatusCreated, map[string]any{"package_type": "firmwarePackage", "product_id": "nb", "version": "2.1"}, img)["package_id"].(string)
	id := lwm2mDevice(t, g, "fwh-1", false, nil)
	c := goClient(t, g, lwm2mclient.Config{Endpoint: "fwh-1", Lifetime: 60})
	fw := lwm2mclient.NewFirmware(c, 0)
	fw.SetProtocols(2)
	fw.SZX = 6 // 1024-byte reads
	fw.StopAfter(2)
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}

	task, err := createFirmwareTask(t, g, "fw_http", pkg, []string{id})
	if err != nil {
		t.Fatalf("CreateBatchTask: %v", err)
	}
	waitFor(t, 30*time.Second, "the device's first two blocks", func() bool { _, b := fw.Image(); return len(b) == 2 })
	v, _ := c.Value("/5/0/1")
	uri := v.Str()
	if !strings.HasPrefix(uri, g.API+"/fw/") {
		t.Fatalf("Package URI %q, want one under %s/fw/", uri, g.API)
	}

	// curl, a client nobody here wrote, resumes the same URI mid-file.
	t.Run("curl", func(t *testing.T) {
		curl := interopTool(t, "curl", "apt-get install curl (listed in .ci/packages)")
		out := filepath.Join(t.TempDir(), "part")
		res, err := exec.Command(curl, "--silent", "--show-error", "--range", "1000-2999", "--output", out,
			"--write-out", "%{http_code} %{content_type}", uri).CombinedOutput()
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
	resp, err := http.Get(uri)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the Package URI after the item ended: %d, want 404", resp.StatusCode)
	}
}
