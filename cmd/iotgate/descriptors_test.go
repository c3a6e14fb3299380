package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/fdbudget"
)

func TestPlanDescriptors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limit   int
		cfg     DescriptorsConfig
		want    descriptorPlan
		wantErr string
	}{
		{name: "defaults at 20,000", limit: 20_000,
			want: descriptorPlan{limit: 20_000, reserve: 1024, budget: 18_976, api: 1897, ops: opsConns, mqtt: 18_976 - 1897 - opsConns}},
		{name: "defaults at 1,024", limit: 1024,
			want: descriptorPlan{limit: 1024, reserve: 256, budget: 768, api: 76, ops: opsConns, mqtt: 768 - 76 - opsConns}},
		{name: "configured", limit: 300, cfg: DescriptorsConfig{Reserve: 120, API: 40},
			want: descriptorPlan{limit: 300, reserve: 120, budget: 180, api: 40, ops: opsConns, mqtt: 180 - 40 - opsConns}},
		{name: "api floor", limit: 200, cfg: DescriptorsConfig{Reserve: 100},
			want: descriptorPlan{limit: 200, reserve: 100, budget: 100, api: 16, ops: opsConns, mqtt: 100 - 16 - opsConns}},
		{name: "reserve takes everything", limit: 1024, cfg: DescriptorsConfig{Reserve: 1024}, wantErr: "leaves 0 descriptors"},
		{name: "too low a limit", limit: 64, wantErr: "raise the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := planDescriptors(tc.limit, tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("plan %+v, want %+v", got, tc.want)
			}
			if got.mqtt+got.api+got.ops != got.budget || got.budget+got.reserve != got.limit {
				t.Fatalf("plan %+v does not add up", got)
			}
		})
	}
}

func TestDescriptorsConfigValidate(t *testing.T) {
	for _, c := range []DescriptorsConfig{{Reserve: -1}, {API: -1}} {
		if err := c.validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (DescriptorsConfig{}).validate(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
}

// TestWatchReserveWarns: the watch warns once the descriptors held
// besides connections pass three quarters of the reserve, at most once
// per warnEvery, and not below it.
func TestWatchReserveWarns(t *testing.T) {
	for _, tc := range []struct {
		name        string
		open        int // descriptors the process holds, connections included
		connections int
		wantLines   int
	}{
		{"well within", 60, 10, 0},       // 50 held besides, reserve 100
		{"at three quarters", 85, 10, 0}, // 75
		{"past three quarters", 96, 10, 1},
		{"past the reserve", 200, 10, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := planDescriptors(1000, DescriptorsConfig{Reserve: 100})
			if err != nil {
				t.Fatal(err)
			}
			b := fdbudget.New(p.budget, nil, nil)
			d := &descriptorPools{budget: b, mqtt: b.Pool("mqtt", p.mqtt), plan: p}
			for range tc.connections {
				d.mqtt.TryAcquire()
			}
			var logs bytes.Buffer
			var counts atomic.Int32
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() {
				d.watchReserve(ctx, time.Millisecond, time.Hour, func() (int, bool) {
					counts.Add(1)
					return tc.open, true
				}, slog.New(slog.NewTextHandler(&logs, nil)))
				close(done)
			}()
			for counts.Load() < 20 {
				time.Sleep(time.Millisecond)
			}
			cancel()
			<-done
			if n := strings.Count(logs.String(), "near the reserve"); n != tc.wantLines {
				t.Fatalf("%d warnings over %d checks, want %d:\n%s", n, counts.Load(), tc.wantLines, logs.String())
			}
		})
	}
}
