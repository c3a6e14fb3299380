package test

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// dockerfileBuild is the builder stage's go build command of the
// Dockerfile, as a shell command run from the repository's root: the
// cache mounts dropped, the build arguments given, the output in out.
func dockerfileBuild(t *testing.T, version, commit, out string) string {
	t.Helper()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.ReplaceAll(string(b), "\\\n", " ")
	var run string
	for _, line := range strings.Split(joined, "\n") {
		if strings.HasPrefix(line, "RUN ") && strings.Contains(line, "go build") {
			run = strings.TrimPrefix(line, "RUN ")
		}
	}
	if run == "" {
		t.Fatal("the Dockerfile has no RUN ... go build")
	}
	run = regexp.MustCompile(`--mount=\S+`).ReplaceAllString(run, "")
	// What follows the build prepares the image's /data.
	run, _, _ = strings.Cut(run, "&&")
	o := regexp.MustCompile(`-o (\S+)`).FindStringSubmatch(run)
	if o == nil {
		t.Fatalf("the Dockerfile's build %q names no -o", run)
	}
	run = strings.Replace(run, o[0], "-o "+out, 1)
	run = strings.NewReplacer("${IOTGATE_VERSION}", version, "${IOTGATE_COMMIT}", commit).Replace(run)
	return run
}

// TestImageBinary builds the binary as the Dockerfile's builder stage does
// (no Docker engine here to build the image itself) and checks what the
// image relies on: a static executable (distroless static has no libc),
// the stamped version, and `iotgate health`, the image's HEALTHCHECK,
// against a running server.
func TestImageBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary the Dockerfile's way")
	}
	bin := filepath.Join(t.TempDir(), "iotgate")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "bash", "-c", dockerfileBuild(t, "v9.8.7-test", "0123abc-test", bin))
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's go build: %v\n%s", err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (%v): it would not run on distroless static", p.Type)
		}
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary keeps its symbol table: -ldflags -s was lost")
	}
	f.Close()

	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "iotgate v9.8.7-test commit 0123abc-test go") {
		t.Errorf("version: %v %q, want the stamped version and commit", err, out)
	}

	g := StartGate(t, GateOptions{})
	health := func() (int, string) {
		out, err := exec.Command(bin, "health", "-url", g.API+"/healthz", "-timeout", "5s").CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := health(); code != 0 || out != "" {
		t.Errorf("health of a running server: exit %d %q, want 0 and nothing", code, out)
	}
	g.Stop()
	if code, out := health(); code != 1 || !strings.Contains(out, "connection refused") {
		t.Errorf("health of a stopped server: exit %d %q, want 1 and the failure", code, out)
	}
}
