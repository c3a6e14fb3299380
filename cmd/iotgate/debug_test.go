package main

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

func TestDebugVarsReportGroupCommit(t *testing.T) {
	store, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: registry.Queues()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	reg, err := registry.New(registry.Options{Store: store, MasterKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ctx := context.Background()
	if _, err := reg.CreateProduct(ctx, registry.Product{ProjectID: "p", ProductID: "m", Name: "m", DeviceType: "x", ProtocolType: "MQTT"}); err != nil {
		t.Fatal(err)
	}
	srv, ln, err := debugServer("127.0.0.1:0", func() any { return store.Stats() })
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	resp, err := http.Get("http://" + ln.Addr().String() + "/debug/vars")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var vars struct {
		Goroutines int                         `json:"goroutines"`
		MemStats   *struct{ HeapInuse uint64 } `json:"memstats"`
		Commits    *badgerkv.Stats             `json:"registry_commits"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&vars); err != nil {
		t.Fatalf("/debug/vars is not JSON: %v", err)
	}
	if vars.Goroutines == 0 || vars.MemStats == nil {
		t.Errorf("expvar's variables missing: %+v", vars)
	}
	if vars.Commits == nil || vars.Commits.Commits < 1 || vars.Commits.Ops < 1 {
		t.Errorf("registry_commits = %+v, want the product's commit", vars.Commits)
	}
}
