package composefile

import (
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The Dockerfile, read as text: instructions grouped by stage.

type instruction struct {
	Op   string // upper case
	Args string
	Line int
}

type stage struct {
	From, Name   string
	Instructions []instruction
}

type dockerfile struct {
	Stages []stage
	Text   string
}

func (d *dockerfile) final() *stage { return &d.Stages[len(d.Stages)-1] }

// shellless reports whether the final image has no /bin/sh.
func (d *dockerfile) shellless() bool {
	from := d.final().From
	return from == "scratch" || strings.Contains(from, "distroless")
}

// entrypoint returns the final stage's exec-form ENTRYPOINT, nil if none.
func (d *dockerfile) entrypoint(t *testing.T) []string {
	var ep []string
	for _, in := range d.final().Instructions {
		if in.Op == "ENTRYPOINT" {
			require.NoError(t, json.Unmarshal([]byte(in.Args), &ep), "Dockerfile:%d: ENTRYPOINT must be exec form", in.Line)
		}
	}
	return ep
}

func loadDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root(t), "Dockerfile"))
	require.NoError(t, err, "Dockerfile must be at the repository root")
	d := &dockerfile{Text: string(data)}
	var cur *instruction
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == nil && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur != nil && strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		cont := strings.HasSuffix(trimmed, "\\")
		trimmed = strings.TrimSuffix(trimmed, "\\")
		if cur == nil {
			op, args, _ := strings.Cut(trimmed, " ")
			cur = &instruction{Op: strings.ToUpper(op), Args: strings.TrimSpace(args), Line: i + 1}
		} else {
			cur.Args += " " + strings.TrimSpace(trimmed)
		}
		if cont {
			continue
		}
		if cur.Op == "FROM" {
			f := strings.Fields(cur.Args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--") })
			require.NotEmpty(t, f, "Dockerfile:%d: FROM without an image", cur.Line)
			st := stage{From: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Name = f[2]
			}
			d.Stages = append(d.Stages, st)
		} else {
			require.NotEmpty(t, d.Stages, "Dockerfile:%d: %s before FROM", cur.Line, cur.Op)
			last := &d.Stages[len(d.Stages)-1]
			last.Instructions = append(last.Instructions, *cur)
		}
		cur = nil
	}
	require.Nil(t, cur, "Dockerfile ends inside a continued line")
	return d
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	d := loadDockerfile(t)
	require.GreaterOrEqual(t, len(d.Stages), 2, "the Dockerfile must be multi-stage: build, then a small final image")

	// The build stage: golang:<go.mod's major.minor>, static builds of our commands.
	gomod, err := os.ReadFile(filepath.Join(root(t), "go.mod"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	require.NotNil(t, m, "go.mod has no go line")
	goMinor := string(m[1])
	build := d.Stages[0]
	require.True(t, strings.HasPrefix(build.From, "golang:"+goMinor), "the build stage must be FROM golang:%s (go.mod says go %s), got %s", goMinor, goMinor, build.From)
	require.NotEmpty(t, build.Name, "the build stage needs a name (FROM ... AS build) for COPY --from")

	var buildRun string
	for _, st := range d.Stages[:len(d.Stages)-1] {
		for _, in := range st.Instructions {
			if in.Op == "RUN" && strings.Contains(in.Args, "go build") {
				buildRun = in.Args
			}
		}
	}
	require.NotEmpty(t, buildRun, "no RUN ... go build in the build stages")
	require.Contains(t, buildRun, "CGO_ENABLED=0", "the final image has no C library: build with CGO_ENABLED=0")
	for _, bin := range ourBinaries {
		require.Regexp(t, `(^|\s)\./cmd/`+bin+`(\s|$)`, buildRun, "go build must build ./cmd/%s", bin)
		src, err := os.ReadFile(filepath.Join(root(t), "cmd", bin, "main.go"))
		require.NoError(t, err, "the Dockerfile builds ./cmd/%s, which must exist", bin)
		require.Contains(t, string(src), "package main")
	}

	// The final stage: our binaries on PATH, the backfills, WORKDIR, BACKFILL_DIR.
	final := d.final()
	var copies, workdir, env []string
	for _, in := range final.Instructions {
		switch in.Op {
		case "COPY", "ADD":
			copies = append(copies, in.Args)
		case "WORKDIR":
			workdir = append(workdir, in.Args)
		case "ENV":
			env = append(env, in.Args)
		case "RUN":
			require.False(t, d.shellless(), "Dockerfile:%d: RUN in a final image without a shell (%s)", in.Line, final.From)
		case "CMD", "ENTRYPOINT":
			if d.shellless() {
				require.True(t, strings.HasPrefix(in.Args, "["), "Dockerfile:%d: %s must be exec form: %s has no shell", in.Line, in.Op, final.From)
			}
		}
	}
	for _, bin := range ourBinaries {
		require.True(t, slices.ContainsFunc(copies, func(c string) bool {
			return strings.HasSuffix(c, " "+binDir+"/"+bin) || strings.HasSuffix(c, "/"+bin+" "+binDir+"/")
		}), "the final stage must copy %s to %s/%s; its COPYs: %q", bin, binDir, bin, copies)
	}
	require.True(t, slices.ContainsFunc(copies, func(c string) bool {
		f := strings.Fields(c)
		return strings.Contains(c, "backfills") && strings.TrimSuffix(f[len(f)-1], "/") == "/app/backfills"
	}), "the final stage must copy the backfills to /app/backfills; its COPYs: %q", copies)
	require.Equal(t, []string{"/app"}, workdir, "the final stage must have WORKDIR /app")
	require.True(t, slices.ContainsFunc(env, func(e string) bool {
		return regexp.MustCompile(`(^|\s)BACKFILL_DIR(=|\s+)/app/backfills(\s|$)`).MatchString(e)
	}), "the final stage must set ENV BACKFILL_DIR=/app/backfills; its ENVs: %q", env)
}

// TestDockerignore checks that .dockerignore keeps out of the build context
// nothing that the build needs: go.mod, go.sum, the packages of our
// commands, and backfills/.
func TestDockerignore(t *testing.T) {
	t.Parallel()
	rootDir := root(t)
	data, err := os.ReadFile(filepath.Join(rootDir, ".dockerignore"))
	if os.IsNotExist(err) {
		t.Skip("no .dockerignore")
	}
	require.NoError(t, err)

	args := []string{"list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}"}
	for _, bin := range ourBinaries {
		args = append(args, "./cmd/"+bin)
	}
	list := exec.Command("go", args...)
	list.Dir = rootDir
	out, err := list.Output()
	require.NoError(t, err, "go list")
	needed := []string{"go.mod", "go.sum", "backfills", "backfills/manual"}
	for _, dir := range strings.Fields(string(out)) {
		if rel, err := filepath.Rel(rootDir, dir); err == nil && !strings.HasPrefix(rel, "..") {
			needed = append(needed, filepath.ToSlash(rel), filepath.ToSlash(rel)+"/main.go")
		}
	}
	for _, line := range strings.Split(string(data), "\n") {
		pattern := strings.TrimSpace(line)
		if pattern == "" || strings.HasPrefix(pattern, "#") || strings.HasPrefix(pattern, "!") {
			continue
		}
		pattern = strings.Trim(path.Clean(pattern), "/")
		for _, p := range needed {
			// A pattern excludes p when it matches p or one of p's parents.
			for q := p; q != "." && q != ""; q = path.Dir(q) {
				ok, err := path.Match(pattern, q)
				require.NoError(t, err, ".dockerignore: bad pattern %q", line)
				require.False(t, ok, ".dockerignore: %q excludes %s, which the build needs", line, p)
			}
		}
	}
}
