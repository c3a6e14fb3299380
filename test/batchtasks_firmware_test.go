package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5/model"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
)

// fwDevice is a device running the project's Go LwM2M client with
// object 5, its update ending in Update Result result.
type fwDevice struct {
	id string
	c  *lwm2mclient.Client
	fw *lwm2mclient.Firmware
}

func startFWDevice(t *testing.T, g *Gate, node string, result int) fwDevice {
	t.Helper()
	id := lwm2mDevice(t, g, node, false, nil)
	c := goClient(t, g, lwm2mclient.Config{Endpoint: node, Lifetime: 60})
	fw := lwm2mclient.NewFirmware(c, 0)
	fw.Result = result
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	return fwDevice{id: id, c: c, fw: fw}
}

// createFirmwareTask creates a firmwareUpgrade task with the SDK.
func createFirmwareTask(t *testing.T, g *Gate, name, pkg string, targets []string) (string, error) {
	t.Helper()
	var doc any = map[string]any{"package_ids": []string{pkg}}
	r, err := sdkClient(g).CreateBatchTask(&model.CreateBatchTaskRequest{Body: &model.CreateBatchTask{
		TaskName: name, TaskType: "firmwareUpgrade", Targets: &targets, Document: &doc}})
	if err != nil {
		return "", err
	}
	return *r.TaskId, nil
}

// waitFirmwareTask polls ShowBatchTask (the SDK) until the task ends.
func waitFirmwareTask(t *testing.T, g *Gate, id string) (*model.Task, map[string]model.TaskDetail) {
	t.Helper()
	client := sdkClient(g)
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := client.ShowBatchTask(&model.ShowBatchTaskRequest{TaskId: id})
		if err != nil {
			t.Fatalf("ShowBatchTask: %v", err)
		}
		switch *r.Batchtask.Status {
		case "Success", "Fail", "PartialSuccess", "Stopped":
			details := map[string]model.TaskDetail{}
			for _, d := range *r.TaskDetails {
				details[*d.Target] = d
			}
			return r.Batchtask, details
		}
		if time.Now().After(deadline) {
			t.Fatalf("firmware task %s still %s: %+v", id, *r.Batchtask.Status, r.TaskDetails)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBatchFirmwareUpgrade: the unmodified Huawei Go SDK runs a
// firmwareUpgrade task over devices running the Go LwM2M client with
// object 5, with a package uploaded on the OTA package route. Each good
// device downloads the image (Block2 from iotgate's CoAP resource) and
// ends Success; one whose update ends in Update Result 8 ends Fail with
// that reason; a device of another product fails alone; a task naming a
// package that does not exist is refused with the package's code.
func TestBatchFirmwareUpgrade(t *testing.T) {
	g := startLwM2MGate(t)
	img := bytes.Repeat([]byte("iotgate firmware image "), 300) // 6,900 bytes: 108 blocks of 64
	pkg := g.uploadPackage(http.StatusCreated, map[string]any{"package_type": "firmwarePackage", "product_id": "nb", "version": "2.0"}, img)["package_id"].(string)
	good := []fwDevice{startFWDevice(t, g, "fwt-ok1", 1), startFWDevice(t, g, "fwt-ok2", 1)}
	bad := startFWDevice(t, g, "fwt-bad", 8)
	g.CreateProduct("other", "CoAP")
	other := g.MustDo(http.StatusCreated, "POST", g.P("/devices"), map[string]any{"node_id": "fwt-other", "product_id": "other"})["device_id"].(string)

	_, err := createFirmwareTask(t, g, "fw_nopkg", "0123456789abcdef01234567", []string{good[0].id})
	var se *sdkerr.ServiceResponseError
	if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound || se.ErrorCode != "IOTDA.014500" {
		t.Fatalf("a task of an unknown package: want 404 IOTDA.014500, got %v", err)
	}

	id, err := createFirmwareTask(t, g, "fw_campaign", pkg, []string{good[0].id, good[1].id, bad.id, other})
	if err != nil {
		t.Fatalf("CreateBatchTask: %v", err)
	}
	task, details := waitFirmwareTask(t, g, id)
	p := task.TaskProgress
	if *task.Status != "PartialSuccess" || *p.Total != 4 || *p.Success != 2 || *p.Fail != 2 {
		t.Fatalf("task %s %+v", *task.Status, p)
	}
	want := sha256.Sum256(img)
	for _, d := range good {
		det := details[d.id]
		if *det.Status != "Success" || det.Output == nil || !strings.Contains(*det.Output, "version 2.0 installed") {
			t.Errorf("%s: %+v", d.id, det)
		}
		if d.fw.Sum() != want {
			t.Errorf("%s downloaded an image that is not the package", d.id)
		}
	}
	if det := details[bad.id]; *det.Status != "Fail" || det.Error == nil || *det.Error.ErrorCode != "IOTDA.014501" ||
		!strings.Contains(*det.Error.ErrorMsg, "Update Result 8") {
		t.Errorf("failing device: %+v %+v", det, det.Error)
	}
	if det := details[other]; *det.Status != "Fail" || det.Error == nil || *det.Error.ErrorCode != "IOTDA.000006" ||
		!strings.Contains(*det.Error.ErrorMsg, "product other") {
		t.Errorf("device of another product: %+v %+v", det, det.Error)
	}

	// RetryBatchTask: a target that succeeded is refused alone; the
	// failed one is tried again (and fails again, still of another
	// product).
	targets := []string{good[0].id, other}
	rr, err := sdkClient(g).RetryBatchTask(&model.RetryBatchTaskRequest{TaskId: id, Body: &model.BatchTargets{Targets: &targets}})
	if err != nil || rr.Targets == nil || len(*rr.Targets) != 2 {
		t.Fatalf("RetryBatchTask: %v %+v", err, rr)
	}
	if r := (*rr.Targets)[0]; *r.Status != "failure" || *r.ErrorCode != "IOTDA.016001" {
		t.Errorf("retry of a device that succeeded: %+v", r)
	}
	if r := (*rr.Targets)[1]; *r.Status != "success" {
		t.Errorf("retry of the failed device: %+v", r)
	}
	task, details = waitFirmwareTask(t, g, id)
	if p := task.TaskProgress; *task.Status != "PartialSuccess" || *p.Success != 2 || *p.Fail != 2 || *p.Total != 4 {
		t.Fatalf("after the retry: task %s %+v", *task.Status, p)
	}
	if det := details[other]; *det.Status != "Fail" || !strings.Contains(*det.Error.ErrorMsg, "product other") {
		t.Errorf("retried device of another product: %+v %+v", det, det.Error)
	}
}

// TestBatchFirmwareUpgradeSurvivesKill: iotgate is killed (SIGKILL)
// while a firmwareUpgrade task has devices done and one mid-download, and
// started again. The task resumes and ends Success with each device
// counted once: the devices already upgraded are not sent the package
// again, the interrupted one downloads it anew from a new Package URI.
func TestBatchFirmwareUpgradeSurvivesKill(t *testing.T) {
	g := startLwM2MGate(t)
	img := bytes.Repeat([]byte("iotgate firmware image "), 100) // 2,300 bytes: 36 blocks of 64
	pkg := g.uploadPackage(http.StatusCreated, map[string]any{"package_type": "firmwarePackage", "product_id": "nb", "version": "3.1"}, img)["package_id"].(string)
	devs := []fwDevice{startFWDevice(t, g, "fwk-1", 1), startFWDevice(t, g, "fwk-2", 1), startFWDevice(t, g, "fwk-3", 1)}
	devs[2].fw.StopAfter(5) // it stops mid-download, as a device that lost power

	id, err := createFirmwareTask(t, g, "fw_kill", pkg, []string{devs[0].id, devs[1].id, devs[2].id})
	if err != nil {
		t.Fatalf("CreateBatchTask: %v", err)
	}
	client := sdkClient(g)
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := client.ShowBatchTask(&model.ShowBatchTaskRequest{TaskId: id})
		if err != nil {
			t.Fatal(err)
		}
		_, blocks := devs[2].fw.Image()
		if *r.Batchtask.TaskProgress.Success == 2 && len(blocks) == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %+v, details %+v, blocks of the third %v", r.Batchtask.TaskProgress, r.TaskDetails, blocks)
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.Kill()
	g.Restart()
	// The device's next uplink (an Update; a Register where the
	// registration did not outlive the process) is when it is served.
	if err := devs[2].c.Update(context.Background()); err != nil {
		if err := devs[2].c.Register(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	task, details := waitFirmwareTask(t, g, id)
	p := task.TaskProgress
	if *task.Status != "Success" || *p.Total != 3 || *p.Success != 3 || *p.Fail != 0 || *p.Processing != 0 {
		t.Fatalf("after the restart: task %s %+v %+v", *task.Status, p, details)
	}
	want := sha256.Sum256(img)
	for i, d := range devs {
		if d.fw.Sum() != want {
			t.Errorf("%s: the image downloaded is not the package", d.id)
		}
		if _, blocks := d.fw.Image(); i < 2 && len(blocks) != 36 {
			t.Errorf("%s was upgraded before the kill but asked for %d blocks: sent the package again", d.id, len(blocks))
		}
	}
}
