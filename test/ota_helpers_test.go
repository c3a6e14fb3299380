package test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
)

// uploadPackage creates an OTA package with its file (multipart: part
// "package" the JSON, part "file" the image, part "sha256" its
// checksum) and wants status want.
func (g *Gate) uploadPackage(want int, meta map[string]any, file []byte) map[string]any {
	g.t.Helper()
	js, err := json.Marshal(meta)
	if err != nil {
		g.t.Fatal(err)
	}
	sum := sha256.Sum256(file)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range []struct {
		name, ctype string
		body        []byte
	}{{"package", "application/json", js}, {"file", "application/octet-stream", file}, {"sha256", "text/plain", []byte(hex.EncodeToString(sum[:]))}} {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, p.name, p.name))
		h.Set("Content-Type", p.ctype)
		w, err := mw.CreatePart(h)
		if err != nil {
			g.t.Fatal(err)
		}
		_, _ = w.Write(p.body)
	}
	_ = mw.Close()
	req, err := http.NewRequest("POST", g.API+g.P("/ota-upgrades/packages"), &buf)
	if err != nil {
		g.t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-Auth-Token", g.Token)
	resp, err := g.HTTP().Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != want {
		g.t.Fatalf("upload package: status %d, want %d: %v", resp.StatusCode, want, out)
	}
	return out
}
