package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"mime/multipart"
	"net/http/httptest"
	"testing"

	"github.com/iotgate/iotgate/registry"
)

// uploadPackage POSTs a multipart package create with the given parts.
func uploadPackage(s *Server, token, project string, parts map[string][]byte) (int, map[string]any) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, name := range []string{"package", "file", "sha256", "extra"} {
		if b, ok := parts[name]; ok {
			w, _ := mw.CreateFormFile(name, name)
			_, _ = w.Write(b)
		}
	}
	_ = mw.Close()
	req := httptest.NewRequest("POST", "/v5/iot/"+project+"/ota-upgrades/packages", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-Auth-Token", token)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

func TestOTAPackageAPIs(t *testing.T) {
	s, reg := newTestServer(t)
	ctx := context.Background()
	if _, err := reg.CreateProduct(ctx, registry.Product{ProjectID: "p1", ProductID: "nb", Name: "NB", DeviceType: "x", ProtocolType: "CoAP"}); err != nil {
		t.Fatal(err)
	}
	img := bytes.Repeat([]byte{0xA5, 0x5A, 1}, 1000)
	sum := sha256.Sum256(img)
	meta := []byte(`{"package_type":"firmwarePackage","product_id":"nb","version":"V1.0.1","support_source_versions":["V1.0.0"],"description":"fix"}`)
	st, p := uploadPackage(s, "tok1", "p1", map[string][]byte{"package": meta, "file": img, "sha256": []byte(hex.EncodeToString(sum[:]))})
	if st != 201 || p["version"] != "V1.0.1" || p["file_sha256"] != hex.EncodeToString(sum[:]) || p["file_size"] != float64(len(img)) ||
		p["app_id"] != "p1" || p["create_time"] == "" {
		t.Fatalf("create: %d %v", st, p)
	}
	id := p["package_id"].(string)
	if _, b, err := reg.OTAPackageImage(ctx, "p1", id); err != nil || !bytes.Equal(b, img) {
		t.Fatalf("stored file: %v", err)
	}
	base := "/v5/iot/p1/ota-upgrades/packages"
	for _, tc := range []struct {
		name   string
		parts  map[string][]byte
		status int
		code   string
	}{
		{"same version", map[string][]byte{"package": meta, "file": img}, 409, codeInvalidInput},
		{"no file", map[string][]byte{"package": meta}, 400, codeInvalidInput},
		{"unknown part", map[string][]byte{"package": meta, "file": img, "extra": {1}}, 400, codeInvalidInput},
		{"wrong checksum", map[string][]byte{"package": []byte(`{"package_type":"firmwarePackage","product_id":"nb","version":"V2"}`), "file": img, "sha256": []byte(hex.EncodeToString(make([]byte, 32)))}, 400, codeInvalidInput},
		{"obs location", map[string][]byte{"package": []byte(`{"package_type":"firmwarePackage","product_id":"nb","version":"V3","file_location":{"obs_location":{"region_name":"r","bucket_name":"b","object_key":"k"}}}`), "file": img}, 400, codeInvalidInput},
		{"unknown field", map[string][]byte{"package": []byte(`{"package_type":"firmwarePackage","product_id":"nb","version":"V4","colour":"red"}`), "file": img}, 400, codeInvalidInput},
		{"unknown product", map[string][]byte{"package": []byte(`{"package_type":"firmwarePackage","product_id":"zz","version":"V5"}`), "file": img}, 404, codeProductNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, out := uploadPackage(s, "tok1", "p1", tc.parts)
			if st != tc.status || out["error_code"] != tc.code {
				t.Fatalf("got %d %v, want %d %s", st, out, tc.status, tc.code)
			}
		})
	}
	for _, tc := range []struct {
		name, token, method, path, body string
		status                          int
		code                            string
	}{
		{"json body", "tok1", "POST", base, string(meta), 400, codeInvalidInput},
		{"list without type", "tok1", "GET", base, "", 400, codeInvalidInput},
		{"list bad type", "tok1", "GET", base + "?package_type=x", "", 400, codeInvalidInput},
		{"other project", "tok2", "GET", "/v5/iot/p2/ota-upgrades/packages/" + id, "", 404, codePackageNotFound},
		{"show", "tok1", "GET", base + "/" + id, "", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, out := call(s, tc.token, tc.method, tc.path, tc.body)
			if st != tc.status || (tc.code != "" && out["error_code"] != tc.code) {
				t.Fatalf("got %d %v, want %d %s", st, out, tc.status, tc.code)
			}
		})
	}
	st, l := call(s, "tok1", "GET", base+"?package_type=firmwarePackage&product_id=nb", "")
	pkgs, _ := l["packages"].([]any)
	if st != 200 || len(pkgs) != 1 || pkgs[0].(map[string]any)["package_id"] != id || l["page"].(map[string]any)["count"] != float64(1) {
		t.Fatalf("list: %d %v", st, l)
	}
	if st, l := call(s, "tok1", "GET", base+"?package_type=softwarePackage", ""); st != 200 || len(l["packages"].([]any)) != 0 {
		t.Fatalf("software list: %d %v", st, l)
	}
	if st, out := call(s, "tok1", "DELETE", base+"/"+id, ""); st != 204 {
		t.Fatalf("delete: %d %v", st, out)
	}
	if st, out := call(s, "tok1", "GET", base+"/"+id, ""); st != 404 || out["error_code"] != codePackageNotFound {
		t.Fatalf("after delete: %d %v", st, out)
	}
}
