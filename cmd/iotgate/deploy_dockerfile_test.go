package main

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The packaging files live at the repository's root and under deploy/;
// nothing here can build the image (no Docker engine), so these tests
// read the files as Docker would and check what the image promises.

const repoRoot = "../.."

// dockerInstr is one Dockerfile instruction: its keyword (upper case),
// its arguments, and the build stage it belongs to (0 the first).
type dockerInstr struct {
	cmd   string
	args  string
	stage int
}

// parseDockerfile splits a Dockerfile into instructions: comments and
// blank lines dropped, backslash-continued lines joined.
func parseDockerfile(t *testing.T, path string) []dockerInstr {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []dockerInstr
	stage, cont := -1, ""
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cont == "") {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cont += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		full := cont + trimmed
		cont = ""
		cmd, args, _ := strings.Cut(full, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, dockerInstr{cmd, strings.TrimSpace(args), stage})
	}
	if cont != "" {
		t.Fatalf("%s ends in a continued line", path)
	}
	return out
}

// execForm parses an instruction's JSON (exec) form.
func execForm(t *testing.T, in dockerInstr) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(in.args), &argv); err != nil {
		t.Fatalf("%s %s: not the exec (JSON) form: %v", in.cmd, in.args, err)
	}
	return argv
}

// goVersion is the go directive of go.mod.
func goVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

func TestDockerfile(t *testing.T) {
	// The link-time stamps the Dockerfile sets: renaming one breaks this
	// build rather than silently unstamping the image.
	_ = []*string{&stampedVersion, &stampedCommit}

	instrs := parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile"))
	var froms []dockerInstr
	for _, in := range instrs {
		if in.cmd == "FROM" {
			froms = append(froms, in)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("%d FROM: want a multi-stage build", len(froms))
	}
	// The builder: the official Go image of go.mod's release, named.
	builder := strings.Fields(froms[0].args)
	if len(builder) != 3 || !strings.EqualFold(builder[1], "AS") {
		t.Fatalf("first stage %q: want FROM golang:... AS name", froms[0].args)
	}
	builderName := builder[2]
	if want := "golang:" + goVersion(t) + "-"; !strings.HasPrefix(builder[0], want) {
		t.Errorf("builder image %s: want %s... (go.mod's release)", builder[0], want)
	}
	final := len(froms) - 1
	if img := strings.Fields(froms[final].args)[0]; img != "gcr.io/distroless/static-debian12:nonroot" && img != "scratch" {
		t.Errorf("final image %s: want a static base with no shell (distroless static, or scratch)", img)
	}

	var build string
	by := map[string][]dockerInstr{} // the final stage's instructions by keyword
	for _, in := range instrs {
		if in.stage == 0 && in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
		if in.stage == final {
			by[in.cmd] = append(by[in.cmd], in)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.stampedVersion=", "-X main.stampedCommit=", "./cmd/iotgate"} {
		if !strings.Contains(build, want) {
			t.Errorf("builder's go build %q lacks %q", build, want)
		}
	}

	// Non-root: the last USER of the final stage.
	users := by["USER"]
	if len(users) == 0 {
		t.Fatal("final stage has no USER: the server would run as root")
	}
	user := users[len(users)-1].args
	if uid, _, _ := strings.Cut(user, ":"); uid == "0" || uid == "root" || uid == "" {
		t.Errorf("USER %s: want a non-root user", user)
	}

	// The entry point is the binary the builder made; the default
	// command reads the configuration the image carries.
	ep := execForm(t, last(t, by, "ENTRYPOINT"))
	cmd := execForm(t, last(t, by, "CMD"))
	i := slices.Index(cmd, "-config")
	if i < 0 || i+1 >= len(cmd) {
		t.Fatalf("CMD %v: want -config FILE", cmd)
	}
	configInImage := cmd[i+1]
	copied := map[string]string{} // destination -> source, of the final stage's COPYs
	for _, in := range by["COPY"] {
		var f []string
		for _, a := range strings.Fields(in.args) {
			if !strings.HasPrefix(a, "--chown") {
				f = append(f, a)
			}
		}
		if len(f) == 3 && f[0] == "--from="+builderName {
			copied[f[2]] = "builder:" + f[1]
		} else if len(f) == 2 {
			copied[f[1]] = f[0]
		}
	}
	if src := copied[ep[0]]; !strings.HasPrefix(src, "builder:") || !strings.Contains(build, "-o "+strings.TrimPrefix(src, "builder:")) {
		t.Errorf("ENTRYPOINT %s is copied from %q: want the builder's go build output", ep[0], src)
	}
	src, ok := copied[configInImage]
	if !ok {
		t.Fatalf("CMD reads %s, which no COPY puts in the image", configInImage)
	}
	cfg, err := loadConfig(filepath.Join(repoRoot, src))
	if err != nil {
		t.Fatalf("the image's configuration: %v", err)
	}

	// Its data_dir is the volume, and the user owns it.
	vols := by["VOLUME"]
	if len(vols) == 0 || strings.Trim(vols[len(vols)-1].args, `[]" `) != cfg.DataDir || cfg.DataDir != "/data" {
		t.Errorf("VOLUME %v, data_dir %s: want both /data", vols, cfg.DataDir)
	}
	if src := copied[cfg.DataDir]; !strings.HasPrefix(src, "builder:") {
		t.Errorf("%s is not made in the image (COPY --chown=%s): a new volume would be root's", cfg.DataDir, user)
	}
	for _, in := range by["COPY"] {
		if strings.HasSuffix(in.args, " "+cfg.DataDir) && !strings.Contains(in.args, "--chown="+user) {
			t.Errorf("COPY %s: want --chown=%s", in.args, user)
		}
	}

	// EXPOSE names every port the configuration listens on.
	exposed := map[string]bool{}
	for _, in := range by["EXPOSE"] {
		for _, p := range strings.Fields(in.args) {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			exposed[p] = true
		}
	}
	addrs := cfg.listenAddrs()
	if len(addrs) != 6 {
		t.Errorf("the image's configuration listens on %d addresses, want the 6 default listeners: %v", len(addrs), addrs)
	}
	apiPort := ""
	for _, a := range addrs {
		_, port, err := net.SplitHostPort(a.addr)
		if err != nil {
			t.Fatalf("%s %q: %v", a.key, a.addr, err)
		}
		if !exposed[port+"/"+a.network] {
			t.Errorf("%s listens on %s/%s, which the Dockerfile does not EXPOSE", a.key, port, a.network)
		}
		if a.key == "api.listen" {
			apiPort = port
		}
	}

	// HEALTHCHECK runs the binary's own probe against the plain-HTTP API
	// listener (the image has no curl).
	hc := last(t, by, "HEALTHCHECK")
	_, argv, ok := strings.Cut(hc.args, "CMD ")
	if !ok {
		t.Fatalf("HEALTHCHECK %s: no CMD", hc.args)
	}
	probe := execForm(t, dockerInstr{cmd: "HEALTHCHECK", args: argv})
	if len(probe) < 2 || probe[0] != ep[0] || probe[1] != "health" {
		t.Fatalf("HEALTHCHECK CMD %v: want [%s health ...]", probe, ep[0])
	}
	url := defaultHealthURL
	if i := slices.Index(probe, "-url"); i >= 0 && i+1 < len(probe) {
		url = probe[i+1]
	}
	if want := "http://127.0.0.1:" + apiPort + "/healthz"; apiPort == "" || url != want {
		t.Errorf("health check asks %s; the image's api.listen port is %q (want %s)", url, apiPort, want)
	}
}

func last(t *testing.T, by map[string][]dockerInstr, cmd string) dockerInstr {
	t.Helper()
	l := by[cmd]
	if len(l) == 0 {
		t.Fatalf("the final stage has no %s", cmd)
	}
	return l[len(l)-1]
}

// dockerignored reports whether .dockerignore's patterns leave path (a
// slash-separated path from the context's root) out of the build
// context: a pattern matches the path or one of its parent directories,
// "**" matches any number of directories, and a later "!" pattern
// brings a path back.
func dockerignored(patterns []string, path string) bool {
	out := false
	for _, p := range patterns {
		keep := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/")
		re := regexp.MustCompile("^" + globRegexp(p) + "(/.*)?$")
		if re.MatchString(path) {
			out = !keep
		}
	}
	return out
}

// globRegexp translates a .dockerignore pattern into a regular
// expression: "**/" any directories, "*" within a path element.
func globRegexp(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case p[i] == '*':
			b.WriteString("[^/]*")
		case p[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	return b.String()
}

func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, filepath.ToSlash(filepath.Clean(l)))
		}
	}
	// The matcher itself, on patterns of the kinds the file uses.
	for _, tc := range []struct {
		patterns []string
		path     string
		want     bool
	}{
		{[]string{".git"}, ".git/HEAD", true},
		{[]string{"**/data"}, "data", true},
		{[]string{"**/data"}, "a/b/data/db/x", true},
		{[]string{"**/data"}, "metadata.go", false},
		{[]string{"*.md"}, "README.md", true},
		{[]string{"*.md"}, "docs/x.md", false},
		{[]string{"test"}, "testdata/x", false},
		{[]string{"deploy", "!deploy/docker"}, "deploy/docker/iotgate.yaml", false},
	} {
		if got := dockerignored(tc.patterns, tc.path); got != tc.want {
			t.Errorf("%v on %s: %v, want %v", tc.patterns, tc.path, got, tc.want)
		}
	}

	// The VCS directory, data directories and the tests stay out.
	for _, p := range []string{".git/config", "data/db/MANIFEST", "test/node/node_modules/x/index.js"} {
		if !dockerignored(patterns, p) {
			t.Errorf(".dockerignore sends %s to the builder", p)
		}
	}
	// What the build reads is in the context: the module files, the
	// source and embedded files of every package of the module the binary
	// is built from, and what the Dockerfile COPYs.
	need := []string{"go.mod", "go.sum", "deploy/docker/iotgate.yaml"}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	list := exec.Command("go", "list", "-deps", "-f",
		`{{if not .Standard}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}`, "./cmd/iotgate")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dir, err := filepath.Rel(root, f[0])
		if err != nil || strings.HasPrefix(dir, "..") {
			continue // another module's package
		}
		for _, name := range f[1:] {
			need = append(need, filepath.ToSlash(filepath.Join(dir, name)))
		}
	}
	if len(need) < 50 {
		t.Fatalf("go list found %d files of the module: %s", len(need), out)
	}
	for _, p := range need {
		if dockerignored(patterns, p) {
			t.Errorf(".dockerignore leaves %s out of the build context", p)
		}
	}
}
