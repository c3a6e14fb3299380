package test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/basic"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/region"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	iotda "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5/model"
)

// TestHuaweiSDK drives the platform with Huawei's own, unmodified Go SDK:
// the request signing, paths, bodies and response shapes must all be what
// it expects. It runs once with basic SDK-HMAC-SHA256 signing and once with
// the derived V11 signing the SDK uses for non-Huawei endpoints when asked.
func TestHuaweiSDK(t *testing.T) {
	g := StartGate(t, GateOptions{})
	for _, tc := range []struct {
		name    string
		derived bool
		https   bool
	}{{"basic", false, false}, {"derived", true, false}, {"https", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			cb := basic.NewCredentialsBuilder().WithAk(g.AK).WithSk(g.SK).WithProjectId(g.Project)
			b := iotda.IoTDAClientBuilder()
			switch {
			case tc.derived:
				cb = cb.WithDerivedPredicate(basic.DefaultDerivedPredicate)
				b = b.WithRegion(region.NewRegion("local-1", g.API)).WithHttpConfig(g.sdkHTTPConfig(nil))
			case tc.https:
				// The SDK verifies the server (its IgnoreSSLVerification
				// is false): it trusts the gate's generated CA, and only
				// it, through its transport option.
				b = b.WithEndpoint(g.APIS).WithHttpConfig(g.sdkHTTPConfig(&http.Transport{TLSClientConfig: g.tlsConfig()}))
			default:
				b = b.WithEndpoint(g.API).WithHttpConfig(g.sdkHTTPConfig(nil))
			}
			client := iotda.NewIoTDAClient(b.WithCredential(cb.Build()).Build())
			sdkFlow(t, client, "sdk-"+tc.name)
		})
	}

	// A wrong secret key is refused with IoTDA's 401 body.
	bad := basic.NewCredentialsBuilder().WithAk(g.AK).WithSk("wrong-secret-key").WithProjectId(g.Project).Build()
	client := iotda.NewIoTDAClient(iotda.IoTDAClientBuilder().WithEndpoint(g.API).WithCredential(bad).
		WithHttpConfig(g.sdkHTTPConfig(nil)).Build())
	_, err := client.ShowProduct(&model.ShowProductRequest{ProductId: "x"})
	var se *sdkerr.ServiceResponseError
	if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized || se.ErrorCode != "IOTDA.000002" {
		t.Fatalf("wrong SK: want 401 IOTDA.000002, got %v", err)
	}
}

// TestHuaweiSDKThrottled: over its credential's rate the SDK gets IoTDA's
// throttling error as a ServiceResponseError (429, IOTDA.021101).
func TestHuaweiSDKThrottled(t *testing.T) {
	g := StartGate(t, GateOptions{APILimits: "rate: 0.001\nburst: 3\n"})
	cred := basic.NewCredentialsBuilder().WithAk(g.AK).WithSk(g.SK).WithProjectId(g.Project).Build()
	client := iotda.NewIoTDAClient(iotda.IoTDAClientBuilder().WithEndpoint(g.APIS).WithCredential(cred).
		WithHttpConfig(g.sdkHTTPConfig(&http.Transport{TLSClientConfig: g.tlsConfig()})).Build())
	for i := range 3 {
		if _, err := client.ListProducts(&model.ListProductsRequest{}); err != nil {
			t.Fatalf("request %d within the burst: %v", i, err)
		}
	}
	_, err := client.ListProducts(&model.ListProductsRequest{})
	var se *sdkerr.ServiceResponseError
	if !errors.As(err, &se) || se.StatusCode != http.StatusTooManyRequests || se.ErrorCode != "IOTDA.021101" ||
		se.ErrorMessage != "Request reached the maximum rate limit." {
		t.Fatalf("over the burst: want 429 IOTDA.021101, got %v", err)
	}
}

func sdkFlow(t *testing.T, client *iotda.IoTDAClient, product string) {
	t.Helper()
	desc := "created by the Huawei SDK"
	pr, err := client.CreateProduct(&model.CreateProductRequest{Body: &model.AddProduct{
		ProductId: &product, Name: "SDK product", DeviceType: "Meter", ProtocolType: "MQTT", DataFormat: "json",
		ServiceCapabilities: []model.ServiceCapability{{ServiceId: "Basic", ServiceType: "Basic"}},
		Description:         &desc,
	}})
	if err != nil {
		t.Fatalf("CreateProduct: %v", err)
	}
	if pr.HttpStatusCode != 201 || *pr.ProductId != product || *pr.Description != desc {
		t.Fatalf("CreateProduct: got %d %+v", pr.HttpStatusCode, pr)
	}

	name := "meter-1"
	secret := "abcdef0123456789"
	secure := false
	timeout := int32(600)
	cr, err := client.AddDevice(&model.AddDeviceRequest{Body: &model.AddDevice{
		NodeId: "node-1", ProductId: product, DeviceName: &name,
		AuthInfo: &model.AuthInfo{Secret: &secret, SecureAccess: &secure, Timeout: &timeout},
	}})
	if err != nil {
		t.Fatalf("AddDevice: %v", err)
	}
	id := *cr.DeviceId
	if cr.HttpStatusCode != 201 || id != product+"_node-1" || *cr.Status != "INACTIVE" || *cr.AuthInfo.Secret != secret ||
		*cr.AuthInfo.SecureAccess || *cr.AuthInfo.Timeout != 600 || *cr.GatewayId != id {
		t.Fatalf("AddDevice: got %d %+v", cr.HttpStatusCode, cr)
	}

	// The same node id again is IOTDA.014031.
	_, err = client.AddDevice(&model.AddDeviceRequest{Body: &model.AddDevice{NodeId: "node-1", ProductId: product}})
	var se *sdkerr.ServiceResponseError
	if !errors.As(err, &se) || se.StatusCode != 400 || se.ErrorCode != "IOTDA.014031" {
		t.Fatalf("duplicate AddDevice: want 400 IOTDA.014031, got %v", err)
	}

	sr, err := client.ShowDevice(&model.ShowDeviceRequest{DeviceId: id})
	if err != nil {
		t.Fatalf("ShowDevice: %v", err)
	}
	if *sr.NodeId != "node-1" || *sr.DeviceName != name || *sr.ProductName != "SDK product" || *sr.CreateTime == "" {
		t.Fatalf("ShowDevice: %+v", sr)
	}

	limit := int32(10)
	lr, err := client.ListDevices(&model.ListDevicesRequest{ProductId: &product, Limit: &limit})
	if err != nil {
		t.Fatalf("ListDevices: %v", err)
	}
	if len(*lr.Devices) != 1 || *(*lr.Devices)[0].DeviceId != id || *lr.Page.Count != 1 {
		t.Fatalf("ListDevices: %+v", lr)
	}

	newName := "meter-renamed"
	ur, err := client.UpdateDevice(&model.UpdateDeviceRequest{DeviceId: id, Body: &model.UpdateDevice{DeviceName: &newName}})
	if err != nil {
		t.Fatalf("UpdateDevice: %v", err)
	}
	if *ur.DeviceName != newName {
		t.Fatalf("UpdateDevice: %+v", ur)
	}

	newSecret := "0123456789abcdef0123"
	primary := "PRIMARY"
	rr, err := client.ResetDeviceSecret(&model.ResetDeviceSecretRequest{DeviceId: id, ActionId: "resetSecret",
		Body: &model.ResetDeviceSecret{Secret: &newSecret, SecretType: &primary}})
	if err != nil {
		t.Fatalf("ResetDeviceSecret: %v", err)
	}
	if *rr.Secret != newSecret || *rr.DeviceId != id {
		t.Fatalf("ResetDeviceSecret: %+v", rr)
	}
	sr, err = client.ShowDevice(&model.ShowDeviceRequest{DeviceId: id})
	if err != nil || *sr.AuthInfo.Secret != newSecret {
		t.Fatalf("ShowDevice after reset: %v %+v", err, sr)
	}

	if _, err := client.DeleteDevice(&model.DeleteDeviceRequest{DeviceId: id}); err != nil {
		t.Fatalf("DeleteDevice: %v", err)
	}
	_, err = client.ShowDevice(&model.ShowDeviceRequest{DeviceId: id})
	if !errors.As(err, &se) || se.StatusCode != 404 || se.ErrorCode != "IOTDA.014000" {
		t.Fatalf("ShowDevice after delete: want 404 IOTDA.014000, got %v", err)
	}
}
