package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/batchtask"
)

func newBatchTestServer(t *testing.T) *Server {
	t.Helper()
	reg, st := testRegistry(t)
	return New(Options{Registry: reg, Router: reg.Router(), Credentials: []Credential{{ProjectID: "p1", Token: "tok1"}},
		BatchTasks: batchtask.New(batchtask.Options{Store: st, Kinds: batchtask.DeviceKinds(reg), Describe: DescribeItemError})})
}

// upload posts a multipart body with a part named field.
func upload(s *Server, contentType, field, name, content string) (int, map[string]any) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	w, _ := mw.CreateFormFile(field, name)
	_, _ = w.Write([]byte(content))
	_ = mw.Close()
	if contentType == "" {
		contentType = mw.FormDataContentType()
	}
	req := httptest.NewRequest("POST", "/v5/iot/p1/batchtask-files", &body)
	req.Header.Set("X-Auth-Token", "tok1")
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

func TestUploadBatchFile(t *testing.T) {
	s := newBatchTestServer(t)
	tests := []struct {
		name, contentType, field, file, content string
		status                                  int
		code, inMsg                             string
	}{
		{"csv", "", "file", "d.csv", "device_id\nd1\n", 201, "", ""},
		{"not multipart", "application/json", "file", "d.csv", "device_id\nd1\n", 400, codeInvalidInput, "multipart/form-data"},
		{"no file part", "", "document", "d.csv", "device_id\nd1\n", 400, codeInvalidInput, `no part named "file"`},
		{"not a workbook", "", "file", "d.xlsx", "device_id\nd1\n", 400, codeInvalidInput, "not an xlsx workbook"},
		{"bad header", "", "file", "d.csv", "devise_id\nd1\n", 400, codeInvalidInput, `"devise_id"`},
	}
	for _, tt := range tests {
		st, out := upload(s, tt.contentType, tt.field, tt.file, tt.content)
		if st != tt.status || tt.code != "" && (out["error_code"] != tt.code || !strings.Contains(fmt.Sprint(out["error_msg"]), tt.inMsg)) {
			t.Errorf("%s: %d %v, want %d %s %q", tt.name, st, out, tt.status, tt.code, tt.inMsg)
		}
		if tt.status == 201 && (out["file_id"] == "" || out["file_name"] != tt.file || out["upload_time"] == "") {
			t.Errorf("%s: %v", tt.name, out)
		}
	}
}

func TestBatchTaskRequests(t *testing.T) {
	s := newBatchTestServer(t)
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"create", "POST", "/v5/iot/p1/batchtasks", `{"task_name":"t1","task_type":"freezeDevices","targets":["d1"]}`, 201, ""},
		{"unknown type", "POST", "/v5/iot/p1/batchtasks", `{"task_name":"t1","task_type":"melt","targets":["d1"]}`, 400, codeInvalidInput},
		{"another app", "POST", "/v5/iot/p1/batchtasks", `{"app_id":"p2","task_name":"t1","task_type":"freezeDevices","targets":["d1"]}`, 400, codeInvalidInput},
		{"targets_filter", "POST", "/v5/iot/p1/batchtasks", `{"task_name":"t1","task_type":"freezeDevices","targets_filter":{"group_ids":["g"]}}`, 400, codeInvalidInput},
		{"list without type", "GET", "/v5/iot/p1/batchtasks", "", 400, codeInvalidInput},
		{"list", "GET", "/v5/iot/p1/batchtasks?task_type=freezeDevices", "", 200, ""},
		{"show unknown", "GET", "/v5/iot/p1/batchtasks/000000000000000000000000", "", 404, codeBatchTaskNotFound},
		{"stop unknown", "POST", "/v5/iot/p1/batchtasks/000000000000000000000000/stop", "", 404, codeBatchTaskNotFound},
		{"stop some targets", "POST", "/v5/iot/p1/batchtasks/000000000000000000000000/stop", `{"targets":["d1"]}`, 400, codeInvalidInput},
		{"delete unknown file", "DELETE", "/v5/iot/p1/batchtask-files/000000000000000000000000", "", 404, codeBatchTaskNotFound},
	}
	var created string
	for _, tt := range tests {
		st, out := call(s, "tok1", tt.method, tt.path, tt.body)
		if st != tt.status || tt.code != "" && out["error_code"] != tt.code {
			t.Errorf("%s: %d %v, want %d %s", tt.name, st, out, tt.status, tt.code)
		}
		if tt.name == "create" {
			created, _ = out["task_id"].(string)
		}
	}
	// No runner: the task waits, so it cannot be deleted, and it is
	// listed with its progress.
	st, out := call(s, "tok1", "DELETE", "/v5/iot/p1/batchtasks/"+created, "")
	if st != 400 || out["error_code"] != codeBatchTaskState {
		t.Fatalf("delete a waiting task: %d %v", st, out)
	}
	st, out = call(s, "tok1", "GET", "/v5/iot/p1/batchtasks/"+created, "")
	task, _ := out["batchtask"].(map[string]any)
	details, _ := out["task_details"].([]any)
	if st != 200 || task["status"] != "Waitting" || len(details) != 1 || details[0].(map[string]any)["target"] != "d1" {
		t.Fatalf("show: %d %v", st, out)
	}
}

func TestDescribeItemError(t *testing.T) {
	tests := []struct {
		err  error
		code string
	}{
		{&registry.ValidationError{Field: "node_id", Reason: "is required"}, codeInvalidInput},
		{&registry.ConflictError{Field: registry.UniqueNodeID, Value: "n1"}, codeDeviceExists},
		{&registry.NotFoundError{Kind: registry.EntityProduct, ID: "p"}, codeProductNotFound},
		{fmt.Errorf("quota: %w", registry.ErrQuota), codeQuota},
		{&registry.NotFoundError{Kind: registry.EntityOTAPackage, ID: "pk"}, codePackageNotFound},
		{&registry.FirmwareFailedError{DeviceID: "d", State: 0, Result: 5, Desc: "integrity check failure"}, codeFirmwareFailed},
		{errors.New("disk on fire"), codeInternal},
	}
	for _, tt := range tests {
		got := DescribeItemError(tt.err)
		if got.Code != tt.code || got.Msg == "" || tt.code == codeInternal && strings.Contains(got.Msg, "fire") {
			t.Errorf("%v: %+v, want %s", tt.err, got, tt.code)
		}
	}
}
