package activation

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/guard"
	"github.com/iotgate/iotgate/registry/regions"
)

// fakeCentre answers with fixed, maximal-length values and records what
// it was asked.
type fakeCentre struct {
	src   netip.Addr
	p     regions.PreAuth
	moved [3]string
}

var (
	longHost = strings.Repeat("h", 63) // iotkit's host buffer, NUL kept
	longID   = strings.Repeat("i", regions.MaxIotIDLen)
	longTok  = strings.Repeat("t", 52) // regions.Tokens' longest
)

func (f *fakeCentre) PreAuth(_ context.Context, src netip.Addr, p regions.PreAuth) (regions.Grant, regions.Endpoint, error) {
	f.src, f.p = src, p
	if p.DeviceName == "bad" {
		return regions.Grant{}, regions.Endpoint{}, regions.ErrBadSign
	}
	return regions.Grant{IotID: longID, IotToken: longTok}, regions.Endpoint{MQTTHost: longHost, MQTTPort: 65535}, nil
}

func (f *fakeCentre) Bootstrap(_ context.Context, src netip.Addr, pk, dn string) (regions.Endpoint, error) {
	f.src = src
	if dn == "none" {
		return regions.Endpoint{}, regions.ErrUnknownDevice
	}
	return regions.Endpoint{MQTTHost: longHost, MQTTPort: 65535}, nil
}

func (f *fakeCentre) Endpoint(id string) (regions.Endpoint, bool) {
	return regions.Endpoint{MQTTHost: "eu.example", MQTTPort: 1883}, id == "eu"
}

func (f *fakeCentre) Move(_ context.Context, project, id, to string) (*regions.Entry, error) {
	f.moved = [3]string{project, id, to}
	if to == "nowhere" {
		return nil, regions.ErrUnknownRegion
	}
	return &regions.Entry{DeviceID: id, Region: to, From: "cn"}, nil
}

func (f *fakeCentre) HuaweiBootstrap(_ context.Context, src netip.Addr, l regions.Login) (regions.Endpoint, error) {
	f.src = src
	if l.DeviceID != "meter1" || l.Password != strings.Repeat("a", 64) {
		return regions.Endpoint{}, regions.ErrBadSign
	}
	return regions.Endpoint{Address: "mqtt.eu.example:8883"}, nil
}

func post(t *testing.T, u string, form url.Values) (int, string) {
	t.Helper()
	// iotkit's form: not URL-encoded, fixed order (activation.md).
	var parts []string
	for _, k := range []string{"productKey", "deviceName", "signmethod", "sign", "version", "clientId", "timestamp", "resources"} {
		if v, ok := form[k]; ok {
			parts = append(parts, k+"="+v[0])
		}
	}
	resp, err := http.Post(u, "application/x-www-form-urlencoded;charset=utf-8", strings.NewReader(strings.Join(parts, "&")))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestCentrePreAuthEndpoint(t *testing.T) {
	fake := &fakeCentre{}
	srv := httptest.NewServer(NewCentreHandler(CentreOptions{Centre: fake}))
	defer srv.Close()
	form := url.Values{"productKey": {"a1TESTPK001"}, "deviceName": {"dev1"}, "signmethod": {"hmacsha256"},
		"sign": {"309BD43DD5AB5D636630A1A03590179DF319F86988E0842368498B1614CD99CC"}, "version": {"default"},
		"clientId": {"a1TESTPK001.dev1"}, "timestamp": {"2524608000000"}, "resources": {"mqtt"}}
	status, body := post(t, srv.URL+"/auth/devicename", form)
	if status != 200 {
		t.Fatalf("HTTP %d: %s", status, body)
	}
	want := `{"code":200,"data":{"iotId":"` + longID + `","iotToken":"` + longTok + `","resources":{"mqtt":{"host":"` + longHost +
		`","port":65535}}},"message":"success"}`
	if body != want {
		t.Fatalf("body\n%s\nwant\n%s", body, want)
	}
	if len(body) > maxPreAuthReply {
		t.Fatalf("longest answer is %d bytes; iotkit 3.0 keeps 300 with the NUL", len(body))
	}
	if fake.p.ClientID != "a1TESTPK001.dev1" || !fake.p.HasTimestamp || fake.p.Timestamp != "2524608000000" || fake.src != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("centre asked %+v from %v", fake.p, fake.src)
	}

	tests := []struct {
		name string
		form url.Values
		want string
	}{
		{"bad sign", url.Values{"productKey": {"p"}, "deviceName": {"bad"}, "sign": {"00"}}, `{"code":401,"message":"sign check failed"}`},
		{"no sign", url.Values{"productKey": {"p"}, "deviceName": {"d"}}, `{"code":460,"message":"parameter sign: missing"}`},
		{"bad method", url.Values{"productKey": {"p"}, "deviceName": {"d"}, "sign": {"00"}, "signmethod": {"rsa"}},
			`{"code":460,"message":"parameter signmethod: not hmacmd5, hmacsha1 or hmacsha256"}`},
	}
	for _, tt := range tests {
		if _, body := post(t, srv.URL+"/auth/devicename", tt.form); body != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, body, tt.want)
		}
	}
}

func TestCentreBootstrapEndpoints(t *testing.T) {
	fake := &fakeCentre{}
	srv := httptest.NewServer(NewCentreHandler(CentreOptions{Centre: fake}))
	defer srv.Close()
	_, body := post(t, srv.URL+"/auth/bootstrap", url.Values{"productKey": {"pk"}, "deviceName": {"dn"}, "clientId": {"pk.dn"}, "resources": {"mqtt"}})
	want := `{"code":200,"data":{"resources":{"mqtt":{"host":"` + longHost + `","port":65535}}}}`
	if body != want {
		t.Fatalf("bootstrap %s, want %s", body, want)
	}
	if len(body) > maxBootstrapReply {
		t.Fatalf("longest bootstrap answer is %d bytes; Link SDK 4.x keeps 192", len(body))
	}
	if _, body := post(t, srv.URL+"/auth/bootstrap", url.Values{"productKey": {"pk"}, "deviceName": {"none"}}); body != `{"code":5001,"message":"device not found"}` {
		t.Errorf("unknown device: %s", body)
	}
	for id, want := range map[string]string{
		"eu": `{"code":200,"data":{"resources":{"mqtt":{"host":"eu.example","port":1883}}}}`,
		"xx": `{"code":460,"message":"unknown regionId"}`,
	} {
		resp, err := http.Get(srv.URL + "/auth/bootstrap/regionId/" + id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Errorf("regionId %s: %s, want %s", id, b, want)
		}
	}
}

func TestCentreAnswerTooLong(t *testing.T) {
	rec := httptest.NewRecorder()
	writeAli(rec, slog.New(slog.DiscardHandler), maxBootstrapReply, aliReply{Code: codeOK, Data: bootstrapData{Resources: resources{MQTT: mqttResource{Host: strings.Repeat("h", 200)}}}})
	if rec.Body.String() != `{"code":500,"message":"server error"}` {
		t.Fatalf("oversized answer sent: %s", rec.Body)
	}
}

func TestCentreMoveRegion(t *testing.T) {
	fake := &fakeCentre{}
	srv := httptest.NewServer(NewCentreHandler(CentreOptions{Centre: fake,
		Admins: []AdminToken{{Project: "proj1", Token: "tok1"}, {Project: "proj2", Token: "tok2"}}}))
	defer srv.Close()
	move := func(project, token, action, body string) (int, map[string]string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v5/iot/"+project+"/devices/pk_dn/action?action_id="+action, strings.NewReader(body))
		req.Header.Set("X-Auth-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if st, m := move("proj1", "tok1", "moveRegion", `{"region_id":"us"}`); st != 200 || m["region_id"] != "us" || fake.moved != [3]string{"proj1", "pk_dn", "us"} {
		t.Fatalf("move: %d %v %v", st, m, fake.moved)
	}
	tests := []struct {
		name, project, token, action, body string
		status                             int
	}{
		{"no token", "proj1", "", "moveRegion", `{"region_id":"us"}`, 401},
		{"another project's token", "proj1", "tok2", "moveRegion", `{"region_id":"us"}`, 401},
		{"other action", "proj1", "tok1", "freeze", `{"region_id":"us"}`, 400},
		{"no region", "proj1", "tok1", "moveRegion", `{}`, 400},
		{"unknown field", "proj1", "tok1", "moveRegion", `{"region_id":"us","x":1}`, 400},
		{"unknown region", "proj1", "tok1", "moveRegion", `{"region_id":"nowhere"}`, 400},
	}
	for _, tt := range tests {
		if st, m := move(tt.project, tt.token, tt.action, tt.body); st != tt.status {
			t.Errorf("%s: HTTP %d %v, want %d", tt.name, st, m, tt.status)
		}
	}
}

// Wrong signs and unknown names count against the identity and the
// address; once banned, even a right sign is refused (429) before any
// region is asked.
func TestCentreGuard(t *testing.T) {
	fake := &fakeCentre{}
	g := guard.NewLocal(guard.Config{IdentityFailures: guard.Window{Max: 2, Window: time.Minute, Ban: time.Minute},
		AddressFailures: guard.Window{Max: 4, Window: time.Minute, Ban: time.Minute}, MaxTracked: 100, MaxBans: 100})
	srv := httptest.NewServer(NewCentreHandler(CentreOptions{Centre: fake, Guard: g}))
	defer srv.Close()
	form := func(dn string) url.Values {
		return url.Values{"productKey": {"pk"}, "deviceName": {dn}, "sign": {"00"}}
	}
	for range 2 {
		if _, body := post(t, srv.URL+"/auth/devicename", form("bad")); !strings.Contains(body, `"code":401`) {
			t.Fatalf("wrong sign: %s", body)
		}
	}
	fake.p = regions.PreAuth{}
	if _, body := post(t, srv.URL+"/auth/devicename", form("bad")); body != `{"code":429,"message":"too many requests"}` {
		t.Fatalf("banned identity: %s", body)
	}
	if fake.p.DeviceName != "" {
		t.Fatal("a banned identity reached the centre")
	}
	if _, body := post(t, srv.URL+"/auth/devicename", form("good")); !strings.Contains(body, `"code":200`) {
		t.Fatalf("another identity: %s", body)
	}
	// Unknown names (enumeration) count against the address.
	for range 2 {
		post(t, srv.URL+"/auth/bootstrap", url.Values{"productKey": {"pk"}, "deviceName": {"none"}})
	}
	if _, body := post(t, srv.URL+"/auth/devicename", form("good")); body != `{"code":429,"message":"too many requests"}` {
		t.Fatalf("banned address: %s", body)
	}
}
