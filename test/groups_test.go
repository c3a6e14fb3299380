package test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5/model"
)

// TestDeviceGroupWithHuaweiSDK: the unmodified Huawei Go SDK creates a
// static group, adds members, lists them, removes one, meets the quotas
// (devices per group, nesting depth, groups per project: small ones,
// configured) with IoTDA's error, and deletes the groups; a deleted
// device leaves its group.
func TestDeviceGroupWithHuaweiSDK(t *testing.T) {
	g := StartGate(t, GateOptions{Extra: "registry:\n  max_devices_per_group: 3\n  max_group_depth: 2\n  max_device_groups_per_project: 3\n"})
	client := sdkClient(g)
	g.CreateProduct("grp", "MQTT")
	var ids []string
	for i := range 4 {
		ids = append(ids, g.MustDo(http.StatusCreated, "POST", g.P("/devices"),
			map[string]any{"node_id": fmt.Sprint("n", i), "product_id": "grp", "device_name": fmt.Sprint("meter ", i)})["device_id"].(string))
	}
	wantCode := func(what string, err error, status int, code string) {
		t.Helper()
		var se *sdkerr.ServiceResponseError
		if !errors.As(err, &se) || se.StatusCode != status || se.ErrorCode != code {
			t.Fatalf("%s: want %d %s, got %v", what, status, code, err)
		}
	}

	name, desc := "water meters", "east wing"
	created, err := client.AddDeviceGroup(&model.AddDeviceGroupRequest{Body: &model.AddDeviceGroupDto{Name: &name, Description: &desc}})
	if err != nil || created.GroupId == nil || *created.Name != name || *created.GroupType != "STATIC" {
		t.Fatalf("AddDeviceGroup: %v %+v", err, created)
	}
	group := *created.GroupId
	for _, id := range ids[:3] {
		if _, err := client.CreateOrDeleteDeviceInGroup(&model.CreateOrDeleteDeviceInGroupRequest{GroupId: group,
			ActionId: "addDevice", DeviceId: id}); err != nil {
			t.Fatalf("addDevice %s: %v", id, err)
		}
	}
	_, err = client.CreateOrDeleteDeviceInGroup(&model.CreateOrDeleteDeviceInGroupRequest{GroupId: group, ActionId: "addDevice", DeviceId: ids[3]})
	wantCode("a fourth device in a group of at most 3", err, http.StatusBadRequest, "IOTDA.014308")

	limit := int32(2)
	page, err := client.ShowDevicesInGroup(&model.ShowDevicesInGroupRequest{GroupId: group, Limit: &limit})
	if err != nil || len(*page.Devices) != 2 || *page.Page.Count != 3 || *(*page.Devices)[0].DeviceId != ids[2] ||
		*(*page.Devices)[0].DeviceName != "meter 2" || *(*page.Devices)[0].ProductId != "grp" {
		t.Fatalf("ShowDevicesInGroup: %v %+v", err, page)
	}
	page, err = client.ShowDevicesInGroup(&model.ShowDevicesInGroupRequest{GroupId: group, Limit: &limit, Marker: page.Page.Marker})
	if err != nil || len(*page.Devices) != 1 || *(*page.Devices)[0].DeviceId != ids[0] {
		t.Fatalf("ShowDevicesInGroup page 2: %v %+v", err, page)
	}
	if _, err := client.CreateOrDeleteDeviceInGroup(&model.CreateOrDeleteDeviceInGroupRequest{GroupId: group,
		ActionId: "removeDevice", DeviceId: ids[1]}); err != nil {
		t.Fatalf("removeDevice: %v", err)
	}
	// A deleted device leaves its group.
	g.MustDo(http.StatusNoContent, "DELETE", g.P("/devices/"+ids[0]), nil)
	page, err = client.ShowDevicesInGroup(&model.ShowDevicesInGroupRequest{GroupId: group})
	if err != nil || len(*page.Devices) != 1 || *page.Page.Count != 1 || *(*page.Devices)[0].DeviceId != ids[2] {
		t.Fatalf("members after a remove and a device delete: %v %+v", err, page)
	}

	// Nesting: a sub-group at level 2; a third level is refused.
	subName := "east meters"
	sub, err := client.AddDeviceGroup(&model.AddDeviceGroupRequest{Body: &model.AddDeviceGroupDto{Name: &subName, SuperGroupId: &group}})
	if err != nil || *sub.SuperGroupId != group {
		t.Fatalf("AddDeviceGroup under %s: %v %+v", group, err, sub)
	}
	deepName := "too deep"
	_, err = client.AddDeviceGroup(&model.AddDeviceGroupRequest{Body: &model.AddDeviceGroupDto{Name: &deepName, SuperGroupId: sub.GroupId}})
	wantCode("a third level of 2", err, http.StatusBadRequest, "IOTDA.014308")
	// Groups per project: the third is the last.
	thirdName := "third"
	if _, err := client.AddDeviceGroup(&model.AddDeviceGroupRequest{Body: &model.AddDeviceGroupDto{Name: &thirdName}}); err != nil {
		t.Fatal(err)
	}
	_, err = client.AddDeviceGroup(&model.AddDeviceGroupRequest{Body: &model.AddDeviceGroupDto{Name: &deepName}})
	wantCode("a fourth group of 3", err, http.StatusBadRequest, "IOTDA.014308")

	newName := "all meters"
	up, err := client.UpdateDeviceGroup(&model.UpdateDeviceGroupRequest{GroupId: group, Body: &model.UpdateDeviceGroupDto{Name: &newName}})
	if err != nil || *up.Name != newName || *up.Description != desc {
		t.Fatalf("UpdateDeviceGroup: %v %+v", err, up)
	}
	shown, err := client.ShowDeviceGroup(&model.ShowDeviceGroupRequest{GroupId: group})
	if err != nil || *shown.Name != newName {
		t.Fatalf("ShowDeviceGroup: %v %+v", err, shown)
	}
	list, err := client.ListDeviceGroups(&model.ListDeviceGroupsRequest{Name: &newName})
	if err != nil || len(*list.DeviceGroups) != 1 || *(*list.DeviceGroups)[0].GroupId != group || *list.Page.Count != 1 {
		t.Fatalf("ListDeviceGroups by name: %v %+v", err, list)
	}
	list, err = client.ListDeviceGroups(&model.ListDeviceGroupsRequest{})
	if err != nil || *list.Page.Count != 3 {
		t.Fatalf("ListDeviceGroups: %v %+v", err, list)
	}

	// A group with a sub-group is deleted after it.
	_, err = client.DeleteDeviceGroup(&model.DeleteDeviceGroupRequest{GroupId: group})
	wantCode("delete a group with a sub-group", err, http.StatusBadRequest, "IOTDA.014808")
	if _, err := client.DeleteDeviceGroup(&model.DeleteDeviceGroupRequest{GroupId: *sub.GroupId}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.DeleteDeviceGroup(&model.DeleteDeviceGroupRequest{GroupId: group}); err != nil {
		t.Fatal(err)
	}
	_, err = client.ShowDeviceGroup(&model.ShowDeviceGroupRequest{GroupId: group})
	wantCode("the deleted group", err, http.StatusNotFound, "IOTDA.014800")
	// Its member stays.
	g.MustDo(http.StatusOK, "GET", g.P("/devices/"+ids[2]), nil)
}
