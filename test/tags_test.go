package test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5/model"
)

// TestTagsWithHuaweiSDK: tags given at creation are returned to the
// unmodified Huawei Go SDK (its AddDevice body has no tags: the create
// is a plain REST call), which binds, unbinds and queries them.
func TestTagsWithHuaweiSDK(t *testing.T) {
	g := StartGate(t, GateOptions{})
	client := sdkClient(g)
	g.CreateProduct("tagsp", "MQTT")
	created := g.MustDo(http.StatusCreated, "POST", g.P("/devices"), map[string]any{"node_id": "n1", "product_id": "tagsp",
		"tags": []map[string]any{{"tag_key": "room", "tag_value": "201"}, {"tag_key": "楼层", "tag_value": "二"}}})
	id := created["device_id"].(string)
	g.MustDo(http.StatusCreated, "POST", g.P("/devices"), map[string]any{"node_id": "n2", "product_id": "tagsp",
		"tags": []map[string]any{{"tag_key": "room", "tag_value": "202"}}})

	show, err := client.ShowDevice(&model.ShowDeviceRequest{DeviceId: id})
	if err != nil || show.Tags == nil || len(*show.Tags) != 2 || (*show.Tags)[0].TagKey != "room" || *(*show.Tags)[0].TagValue != "201" ||
		(*show.Tags)[1].TagKey != "楼层" {
		t.Fatalf("ShowDevice: %v %+v", err, show)
	}

	owner := "ops"
	if _, err := client.TagDevice(&model.TagDeviceRequest{Body: &model.BindTagsDto{ResourceType: "device", ResourceId: id,
		Tags: []model.TagV5Dto{{TagKey: "owner", TagValue: &owner}}}}); err != nil {
		t.Fatalf("TagDevice: %v", err)
	}
	if _, err := client.UntagDevice(&model.UntagDeviceRequest{Body: &model.UnbindTagsDto{ResourceType: "device", ResourceId: id,
		TagKeys: []string{"楼层"}}}); err != nil {
		t.Fatalf("UntagDevice: %v", err)
	}
	list, err := client.ListDevices(&model.ListDevicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range *list.Devices {
		if *d.DeviceId == id && (d.Tags == nil || len(*d.Tags) != 2 || (*d.Tags)[1].TagKey != "owner") {
			t.Fatalf("ListDevices: %+v", *d.Tags)
		}
	}

	room := "201"
	limit := int32(1)
	q, err := client.ListResourcesByTags(&model.ListResourcesByTagsRequest{Limit: &limit, Body: &model.QueryResourceByTagsDto{
		ResourceType: "device", Tags: []model.TagV5Dto{{TagKey: "room"}}}})
	if err != nil || len(*q.Resources) != 1 || *q.Page.Count != 2 || *(*q.Resources)[0].ResourceId != "tagsp_n2" {
		t.Fatalf("ListResourcesByTags room=*: %v %+v", err, q)
	}
	q, err = client.ListResourcesByTags(&model.ListResourcesByTagsRequest{Limit: &limit, Marker: q.Page.Marker,
		Body: &model.QueryResourceByTagsDto{ResourceType: "device", Tags: []model.TagV5Dto{{TagKey: "room"}}}})
	if err != nil || len(*q.Resources) != 1 || *(*q.Resources)[0].ResourceId != id {
		t.Fatalf("ListResourcesByTags page 2: %v %+v", err, q)
	}
	q, err = client.ListResourcesByTags(&model.ListResourcesByTagsRequest{Body: &model.QueryResourceByTagsDto{
		ResourceType: "device", Tags: []model.TagV5Dto{{TagKey: "room", TagValue: &room}, {TagKey: "owner", TagValue: &owner}}}})
	if err != nil || len(*q.Resources) != 1 || *(*q.Resources)[0].ResourceId != id {
		t.Fatalf("ListResourcesByTags room=201|owner=ops: %v %+v", err, q)
	}

	// An unknown key cannot be unbound.
	_, err = client.UntagDevice(&model.UntagDeviceRequest{Body: &model.UnbindTagsDto{ResourceType: "device", ResourceId: id,
		TagKeys: []string{"nope"}}})
	var se *sdkerr.ServiceResponseError
	if !errors.As(err, &se) || se.StatusCode != http.StatusBadRequest || se.ErrorCode != "IOTDA.000006" {
		t.Fatalf("unbind of an unknown key: want 400 IOTDA.000006, got %v", err)
	}
}
