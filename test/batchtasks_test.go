package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/def"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	iotda "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5/model"
	"github.com/xuri/excelize/v2"
)

// batchRow is one row of a createDevices file and what should become of
// it: the IoTDA code it fails with ("" when it creates a device).
type batchRow struct {
	node, product, name, secret string
	wantCode                    string
}

// batchRows makes n rows for product, some deliberately bad: an unknown
// product, an invalid node id, a secret too short, a node id another row
// already has, and one of a device created before the task.
func batchRows(n int, product, existing string) []batchRow {
	rows := make([]batchRow, n)
	for i := range rows {
		r := batchRow{node: fmt.Sprintf("meter%04d", i), product: product, name: fmt.Sprintf("meter %d", i), secret: fmt.Sprintf("secret%04d", i)}
		switch {
		case i == 3:
			r.node, r.wantCode = existing, "IOTDA.014031"
		case i%97 == 5:
			r.product, r.wantCode = "nosuchproduct", "IOTDA.013000"
		case i%89 == 7:
			r.node, r.wantCode = fmt.Sprintf("bad node %d!", i), "IOTDA.000006"
		case i%83 == 9:
			r.secret, r.wantCode = "short", "IOTDA.000006"
		case i%113 == 80:
			// A row far enough back to have been done first: the
			// runner takes rows 64 at a time, in order.
			r.node, r.wantCode = rows[i-70].node, "IOTDA.014031"
		}
		rows[i] = r
	}
	return rows
}

// writeSheet writes rows under header into an xlsx file in dir.
func writeSheet(t *testing.T, dir, name string, header []string, rows [][]string) string {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	sheet := f.GetSheetName(0)
	if err := f.SetSheetRow(sheet, "A1", &header); err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		if err := f.SetSheetRow(sheet, fmt.Sprintf("A%d", i+2), &r); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, name)
	if err := f.SaveAs(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func uploadBatchFile(t *testing.T, client *iotda.IoTDAClient, path string) (*model.UploadBatchTaskFileResponse, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return client.UploadBatchTaskFile(&model.UploadBatchTaskFileRequest{Body: &model.UploadBatchTaskFileRequestBody{File: def.NewFilePart(f)}})
}

// TestBatchCreateDevicesSurvivesKill: the unmodified Huawei Go SDK
// uploads a createDevices xlsx of 1,000 rows (some bad) and creates the
// task; iotgate is killed (SIGKILL) while the task is processing and
// started again; the task completes with a result per row: every good
// row's device created exactly once, every bad row failed with the code
// AddDevice gives for it. Files that are not workbooks, have a bad
// header or too many rows are refused with a 400 naming the problem.
func TestBatchCreateDevicesSurvivesKill(t *testing.T) {
	g := StartGate(t, GateOptions{Extra: "batch_tasks:\n  max_items: 1000\n  workers: 3\n  rate: 100\n"})
	client := sdkClient(g)
	g.CreateProduct("bt", "MQTT")
	g.MustDo(http.StatusCreated, "POST", g.P("/devices"), map[string]any{"node_id": "already", "product_id": "bt"})
	dir := t.TempDir()
	header := []string{"node_id", "product_id", "device_name", "secret"}

	wantRefusal := func(what, path, inMsg string) {
		t.Helper()
		_, err := uploadBatchFile(t, client, path)
		var se *sdkerr.ServiceResponseError
		if !errors.As(err, &se) || se.StatusCode != http.StatusBadRequest || se.ErrorCode != "IOTDA.000006" || !strings.Contains(se.ErrorMessage, inMsg) {
			t.Fatalf("upload %s: want 400 IOTDA.000006 naming %q, got %v", what, inMsg, err)
		}
	}
	notBook := filepath.Join(dir, "notabook.xlsx")
	if err := os.WriteFile(notBook, []byte("node_id,product_id\nx,y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantRefusal("a text file named .xlsx", notBook, "not an xlsx workbook")
	wantRefusal("a bad header", writeSheet(t, dir, "badheader.xlsx", []string{"node_id", "produkt_id"}, [][]string{{"a", "b"}}), `"produkt_id"`)
	var big [][]string
	for i := range 1001 {
		big = append(big, []string{fmt.Sprint("n", i), "bt"})
	}
	wantRefusal("1,001 rows", writeSheet(t, dir, "big.xlsx", header[:2], big), "more than 1000 rows")

	rows := batchRows(1000, "bt", "already")
	cells := make([][]string, len(rows))
	good := 0
	for i, r := range rows {
		cells[i] = []string{r.node, r.product, r.name, r.secret}
		if r.wantCode == "" {
			good++
		}
	}
	up, err := uploadBatchFile(t, client, writeSheet(t, dir, "BatchCreateDevices_meters.xlsx", header, cells))
	if err != nil || up.FileId == nil || *up.FileName != "BatchCreateDevices_meters.xlsx" {
		t.Fatalf("UploadBatchTaskFile: %v %+v", err, up)
	}
	files, err := client.ListBatchTaskFiles(&model.ListBatchTaskFilesRequest{})
	if err != nil || len(*files.Files) != 1 || *(*files.Files)[0].FileId != *up.FileId {
		t.Fatalf("ListBatchTaskFiles: %v %+v", err, files)
	}
	created, err := client.CreateBatchTask(&model.CreateBatchTaskRequest{Body: &model.CreateBatchTask{
		TaskName: "meters_from_xlsx", TaskType: "createDevices", DocumentSource: up.FileId}})
	if err != nil || created.TaskId == nil || *created.TaskProgress.Total != 1000 {
		t.Fatalf("CreateBatchTask: %v %+v", err, created)
	}
	task := *created.TaskId

	show := func() *model.ShowBatchTaskResponse {
		t.Helper()
		r, err := client.ShowBatchTask(&model.ShowBatchTaskRequest{TaskId: task})
		if err != nil {
			t.Fatalf("ShowBatchTask: %v", err)
		}
		return r
	}
	// Kill it halfway.
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := show()
		p := r.Batchtask.TaskProgress
		if done := *p.Success + *p.Fail; done >= 300 {
			if *r.Batchtask.Status != "Processing" || done > 800 {
				t.Fatalf("want the task processing with about half its rows done; it is %s with %d", *r.Batchtask.Status, done)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task progress after 60 s: %+v", *p)
		}
		time.Sleep(100 * time.Millisecond)
	}
	g.Kill()
	g.Restart()

	deadline = time.Now().Add(90 * time.Second)
	var final *model.ShowBatchTaskResponse
	for {
		final = show()
		if s := *final.Batchtask.Status; s != "Processing" && s != "Waitting" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task not done 90 s after the restart: %+v", *final.Batchtask.TaskProgress)
		}
		time.Sleep(200 * time.Millisecond)
	}
	p := final.Batchtask.TaskProgress
	if *final.Batchtask.Status != "PartialSuccess" || *p.Total != 1000 || *p.Success != int32(good) || *p.Fail != int32(1000-good) ||
		*p.Waitting != 0 || *p.Processing != 0 {
		t.Fatalf("final task: %s %+v; want PartialSuccess with %d successes", *final.Batchtask.Status, *p, good)
	}

	// Every row's result, in file order, 50 a page.
	var details []model.TaskDetail
	limit := int32(50)
	var marker *string
	for {
		r, err := client.ShowBatchTask(&model.ShowBatchTaskRequest{TaskId: task, Limit: &limit, Marker: marker})
		if err != nil {
			t.Fatal(err)
		}
		details = append(details, *r.TaskDetails...)
		if r.Page == nil || r.Page.Marker == nil || len(*r.TaskDetails) < int(limit) {
			break
		}
		marker = r.Page.Marker
	}
	if len(details) != len(rows) {
		t.Fatalf("%d task details, want %d", len(details), len(rows))
	}
	for i, r := range rows {
		d := details[i]
		if *d.Target != r.node {
			t.Fatalf("row %d: target %q, want %q", i, *d.Target, r.node)
		}
		if r.wantCode == "" {
			if *d.Status != "Success" || d.Output == nil || *d.Output != "bt_"+r.node {
				t.Fatalf("row %d (%s): want Success with output bt_%s, got %s %v %+v", i, r.node, r.node, *d.Status, d.Output, d.Error)
			}
			continue
		}
		if *d.Status != "Fail" || d.Error == nil || *d.Error.ErrorCode != r.wantCode || *d.Error.ErrorMsg == "" {
			t.Fatalf("row %d (%s): want Fail %s, got %s %+v", i, r.node, r.wantCode, *d.Status, d.Error)
		}
	}
	// Each good row's device exists, once: the product has them and the
	// one created before.
	one := int32(1)
	product := "bt"
	lr, err := client.ListDevices(&model.ListDevicesRequest{ProductId: &product, Limit: &one})
	if err != nil || *lr.Page.Count != int64(good+1) {
		t.Fatalf("ListDevices: %v; want %d devices", err, good+1)
	}
	dev, err := client.ShowDevice(&model.ShowDeviceRequest{DeviceId: "bt_" + rows[len(rows)-1].node})
	if err != nil || *dev.DeviceName != rows[len(rows)-1].name {
		t.Fatalf("ShowDevice of the last row: %v %+v", err, dev)
	}
	// Failures filtered by status and a target looked up.
	failed := "Fail"
	fr, err := client.ShowBatchTask(&model.ShowBatchTaskRequest{TaskId: task, TaskDetailStatus: &failed, Limit: &limit})
	if err != nil || *fr.Page.Count != int64(1000-good) || *(*fr.TaskDetails)[0].Target != "already" {
		t.Fatalf("ShowBatchTask failures: %v %+v", err, fr)
	}
	list, err := client.ListBatchTasks(&model.ListBatchTasksRequest{TaskType: "createDevices"})
	if err != nil || len(*list.Batchtasks) != 1 || *(*list.Batchtasks)[0].TaskId != task || *(*list.Batchtasks)[0].Status != "PartialSuccess" {
		t.Fatalf("ListBatchTasks: %v %+v", err, list)
	}
	if _, err := client.DeleteBatchTask(&model.DeleteBatchTaskRequest{TaskId: task}); err != nil {
		t.Fatalf("DeleteBatchTask: %v", err)
	}
	_, err = client.ShowBatchTask(&model.ShowBatchTaskRequest{TaskId: task})
	var se *sdkerr.ServiceResponseError
	if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
		t.Fatalf("ShowBatchTask of the deleted task: %v", err)
	}
	if _, err := client.DeleteBatchTaskFile(&model.DeleteBatchTaskFileRequest{FileId: *up.FileId}); err != nil {
		t.Fatalf("DeleteBatchTaskFile: %v", err)
	}
}

// uploadBatchFile posts content as the multipart part "file" named name
// to /batchtask-files with the project's token, through the checked
// client, and wants status.
func (g *Gate) uploadBatchFile(name, content string, status int) map[string]any {
	g.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, err := mw.CreateFormFile("file", name)
	if err == nil {
		_, err = part.Write([]byte(content))
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		g.t.Fatal(err)
	}
	req, err := http.NewRequest("POST", g.API+g.P("/batchtask-files"), &body)
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
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != status {
		g.t.Fatalf("upload %s: status %d (want %d), %v %v", name, resp.StatusCode, status, out, err)
	}
	return out
}

// waitBatchTask waits up to 30 s for a task to end in status want.
func (g *Gate) waitBatchTask(id, want string) map[string]any {
	g.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := g.MustDo(200, "GET", g.P("/batchtasks/"+id), nil)
		st := out["batchtask"].(map[string]any)["status"].(string)
		switch {
		case st == want:
			return out
		case st != "Initializing" && st != "Waitting" && st != "Processing" && st != "Stopping":
			g.t.Fatalf("batch task %s ended %s, want %s: %v", id, st, want, out)
		case time.Now().After(deadline):
			g.t.Fatalf("batch task %s still %s after 30 s", id, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
