package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// On a filesystem that fills up, the platform refuses writes with a clear
// 503 instead of dying of SIGBUS inside the database's mapped files; reads
// go on; writes resume by themselves once space is freed; and it starts on
// a full disk (read-only until space returns). Needs root to mount a
// size-limited tmpfs.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("disk-full test mounts a tmpfs")
	}
	fs := filepath.Join(t.TempDir(), "fs")
	if err := os.MkdirAll(fs, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=320m", "tmpfs", fs).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (run as root to test a full disk): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", fs).Run() })
	const reserve = 128 << 20
	extra := fmt.Sprintf("store:\n  min_free_bytes: %d\n  ballast_bytes: %d\n", reserve, 8<<20)
	g := StartGate(t, GateOptions{DataDir: fs, Extra: extra})
	g.CreateProduct("p1", "MQTT")
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "first", "product_id": "p1"})

	// Fill the filesystem to just above the reserve.
	filler := filepath.Join(fs, "filler")
	fill := func(leave int64) {
		t.Helper()
		free := freeBytes(t, fs)
		f, err := os.OpenFile(filler, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if n := free - leave; n > 0 {
			if err := syscall.Fallocate(int(f.Fd()), 0, 0, sizeOf(t, filler)+n); err != nil {
				t.Fatalf("fill: %v", err)
			}
		}
	}
	fill(reserve + 1<<20)

	// Creates go on until the reserve is reached, then get 503; none dies.
	var refused map[string]any
	created := 0
	for i := range 5000 {
		code, body := g.Do("POST", g.P("/devices"), map[string]any{"node_id": fmt.Sprint("n", i), "product_id": "p1",
			"description": strings.Repeat("x", 1000)})
		if code == 503 {
			refused = body
			break
		}
		if code != 201 {
			t.Fatalf("create %d: %d %v", i, code, body)
		}
		created++
	}
	if refused == nil {
		t.Fatalf("%d creates on a full filesystem all succeeded", created)
	}
	if refused["error_code"] != "IOTDA.000001" || !strings.Contains(fmt.Sprint(refused["error_msg"]), "storage is full") {
		t.Fatalf("refusal: %v", refused)
	}
	t.Logf("%d creates acknowledged before the store filled; then %v", created, refused)
	// Reads still work; the process is alive.
	g.MustDo(200, "GET", g.P("/devices/p1_first"), nil)
	g.MustDo(200, "GET", g.P("/devices"), nil)

	// Space returns: writes resume without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "writes to resume", func() bool {
		code, _ := g.Do("POST", g.P("/devices"), map[string]any{"node_id": "after-free", "product_id": "p1"})
		return code == 201
	})

	// A start on a full disk: it opens (the ballast makes room), serves
	// reads, refuses writes, and recovers once space is freed.
	g.Stop()
	fill(4 << 20)
	g.Restart()
	g.MustDo(200, "GET", g.P("/devices/p1_after-free"), nil)
	code, body := g.Do("POST", g.P("/devices"), map[string]any{"node_id": "on-full-start", "product_id": "p1"})
	if code != 503 {
		t.Fatalf("create after a start on a full disk: %d %v", code, body)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "writes to resume after a start on a full disk", func() bool {
		code, _ := g.Do("POST", g.P("/devices"), map[string]any{"node_id": "on-full-start", "product_id": "p1"})
		return code == 201
	})
	// Every acknowledged create is there.
	l := g.MustDo(200, "GET", g.P("/devices?limit=1"), nil)
	if n := l["page"].(map[string]any)["count"].(float64); int(n) != created+3 {
		t.Fatalf("%v devices listed, %d acknowledged", n, created+3)
	}
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

func sizeOf(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
