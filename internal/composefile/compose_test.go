package composefile

import (
	"cmp"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/backfill/backfill/internal/demo"
	"github.com/backfill/backfill/internal/testdb"
	"github.com/backfill/backfill/jobs"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// hardStopWindow is how long jobs.Worker.Stop waits after the shutdown
// timeout for cancelled jobs to return: stop_grace_period must cover both.
const hardStopWindow = 10 * time.Second

// Our binaries, and where the Dockerfile puts them.
const (
	enqueueBin = "enqueue"
	workerBin  = "worker"
	demoBin    = "demo"
	binDir     = "/usr/local/bin"
)

// ourBinaries are the commands the image holds; the tests build all of them.
var ourBinaries = []string{enqueueBin, workerBin, demoBin}

// ---------------------------------------------------------------------------
// The compose file, as far as the tests read it.

type composeFile struct {
	Services map[string]*service `yaml:"services"`
	Volumes  map[string]any      `yaml:"volumes"`

	raw map[string]any // for unknown keys
}

type service struct {
	Image           string       `yaml:"image"`
	Build           *buildSpec   `yaml:"build"`
	Command         *argv        `yaml:"command"`
	Entrypoint      *argv        `yaml:"entrypoint"`
	Environment     envMap       `yaml:"environment"`
	EnvFile         any          `yaml:"env_file"`
	DependsOn       dependencies `yaml:"depends_on"`
	Healthcheck     *healthcheck `yaml:"healthcheck"`
	Restart         string       `yaml:"restart"`
	StopGracePeriod string       `yaml:"stop_grace_period"`
	StopSignal      string       `yaml:"stop_signal"`
	ContainerName   string       `yaml:"container_name"`
	Ports           []any        `yaml:"ports"`
	Volumes         []any        `yaml:"volumes"`
	Profiles        []string     `yaml:"profiles"`

	name string
}

// argv is a command or entrypoint. Compose splits a string form into words
// itself; the tests want the exec-form list, which says exactly what runs.
type argv struct {
	Words      []string
	FromString string // the string form, when that is what the file has
}

func (a *argv) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.SequenceNode:
		return n.Decode(&a.Words)
	case yaml.ScalarNode:
		a.FromString = n.Value
		return nil
	}
	return fmt.Errorf("line %d: command must be a list or a string", n.Line)
}

// envMap is environment in either form; a variable without a value (taken
// from the host by Compose) is left out.
type envMap map[string]string

func (e *envMap) UnmarshalYAML(n *yaml.Node) error {
	*e = envMap{}
	switch n.Kind {
	case yaml.MappingNode:
		var m map[string]any
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			if v != nil {
				(*e)[k] = fmt.Sprint(v)
			}
		}
		return nil
	case yaml.SequenceNode:
		var list []string
		if err := n.Decode(&list); err != nil {
			return err
		}
		for _, kv := range list {
			if k, v, ok := strings.Cut(kv, "="); ok {
				(*e)[k] = v
			}
		}
		return nil
	}
	return fmt.Errorf("line %d: environment must be a map or a list", n.Line)
}

// dependencies is depends_on in either form: target -> condition, "" for
// the short form (which means service_started).
type dependencies map[string]string

func (d *dependencies) UnmarshalYAML(n *yaml.Node) error {
	*d = dependencies{}
	switch n.Kind {
	case yaml.SequenceNode:
		var list []string
		if err := n.Decode(&list); err != nil {
			return err
		}
		for _, s := range list {
			(*d)[s] = ""
		}
		return nil
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			(*d)[k] = v.Condition
		}
		return nil
	}
	return fmt.Errorf("line %d: depends_on must be a list or a map", n.Line)
}

type healthcheck struct {
	Test        any    `yaml:"test"`
	Interval    string `yaml:"interval"`
	Timeout     string `yaml:"timeout"`
	StartPeriod string `yaml:"start_period"`
	Retries     int    `yaml:"retries"`
	Disable     bool   `yaml:"disable"`
}

// words returns the healthcheck's command as words, "CMD"/"CMD-SHELL" first.
func (h *healthcheck) words() []string {
	switch v := h.Test.(type) {
	case string:
		return append([]string{"CMD-SHELL"}, strings.Fields(v)...)
	case []any:
		out := make([]string, len(v))
		for i, w := range v {
			out[i] = fmt.Sprint(w)
		}
		return out
	}
	return nil
}

type buildSpec struct {
	Context    string
	Dockerfile string
}

func (b *buildSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	var m struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	}
	if err := n.Decode(&m); err != nil {
		return err
	}
	b.Context, b.Dockerfile = m.Context, m.Dockerfile
	return nil
}

// knownServiceKeys are the service keys the tests accept: a misspelt key
// (depend_on) would otherwise be ignored by the tests and rejected by Compose.
var knownServiceKeys = map[string]bool{
	"build": true, "cap_add": true, "cap_drop": true, "command": true, "configs": true,
	"container_name": true, "cpus": true, "depends_on": true, "deploy": true,
	"develop": true, "entrypoint": true, "env_file": true, "environment": true,
	"expose": true, "extra_hosts": true, "healthcheck": true, "hostname": true,
	"image": true, "init": true, "labels": true, "logging": true, "mem_limit": true,
	"networks": true, "platform": true, "ports": true, "profiles": true,
	"pull_policy": true, "read_only": true, "restart": true, "secrets": true,
	"security_opt": true, "shm_size": true, "stop_grace_period": true,
	"stop_signal": true, "tmpfs": true, "ulimits": true, "user": true,
	"volumes": true, "working_dir": true,
}

var knownTopKeys = map[string]bool{
	"services": true, "volumes": true, "networks": true, "configs": true,
	"secrets": true, "name": true, "include": true,
}

// ---------------------------------------------------------------------------
// Files, found once per test binary.

var moduleRoot = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: not in a module")
	}
	return filepath.Dir(gomod), nil
})

func root(t *testing.T) string {
	t.Helper()
	dir, err := moduleRoot()
	require.NoError(t, err)
	return dir
}

func loadCompose(t *testing.T) *composeFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root(t), "docker-compose.yml"))
	require.NoError(t, err, "docker-compose.yml must be at the repository root")
	var c composeFile
	require.NoError(t, yaml.Unmarshal(data, &c), "docker-compose.yml does not parse")
	require.NoError(t, yaml.Unmarshal(data, &c.raw))
	require.NotEmpty(t, c.Services, "docker-compose.yml has no services")
	for name, s := range c.Services {
		require.NotNil(t, s, "service %s is empty", name)
		s.name = name
	}
	return &c
}

// ---------------------------------------------------------------------------
// Compose structure.

// ourImage reports whether s runs the image the Dockerfile builds.
func (c *composeFile) ourImage(s *service) bool {
	if s.Build != nil {
		return true
	}
	for _, o := range c.Services {
		if o.Build != nil && o.Image != "" && o.Image == s.Image {
			return true
		}
	}
	return false
}

// argvOf returns what a service of our image runs: entrypoint + command,
// interpolated, with the Dockerfile's ENTRYPOINT when the service sets none.
func argvOf(t *testing.T, s *service, imageEntrypoint []string) []string {
	t.Helper()
	var words []string
	for _, a := range []*argv{s.Entrypoint, s.Command} {
		if a == nil {
			continue
		}
		require.Empty(t, a.FromString, "service %s: write the command as a list, e.g. [\"enqueue\", \"migrate\"], not %q: the image has no shell and the tests run the list as it is", s.name, a.FromString)
		for _, w := range a.Words {
			words = append(words, interpolate(t, w))
		}
	}
	if s.Entrypoint == nil {
		words = append(slices.Clone(imageEntrypoint), words...)
	}
	require.NotEmpty(t, words, "service %s builds our image but has no command: name the binary (%s)", s.name, strings.Join(ourBinaries, ", "))
	return words
}

// binaryOf returns "enqueue", "worker" or "demo" for an argv of our image,
// failing for anything else (a shell, a typo, a path where the image has no
// binary).
func binaryOf(t *testing.T, service string, words []string) string {
	t.Helper()
	bin := words[0]
	if strings.Contains(bin, "/") {
		require.Equal(t, binDir, path.Dir(bin), "service %s runs %s, but the image has its binaries in %s", service, bin, binDir)
		bin = path.Base(bin)
	}
	require.Contains(t, ourBinaries, bin,
		"service %s runs %q: commands of our image must run %s directly (exec form; the image has no shell)", service, words[0], strings.Join(ourBinaries, ", "))
	return bin
}

// interpolate does Compose's ${VAR}, ${VAR:-default}, ${VAR-default} and $$
// with an empty host environment, so that the defaults are what is tested.
func interpolate(t *testing.T, s string) string {
	t.Helper()
	return os.Expand(s, func(name string) string {
		if name == "$" {
			return "$"
		}
		for _, op := range []string{":-", "-"} {
			if _, def, ok := strings.Cut(name, op); ok {
				return def
			}
		}
		for _, op := range []string{":?", "?"} {
			if v, msg, ok := strings.Cut(name, op); ok {
				t.Fatalf("docker-compose.yml requires ${%s} (%s): the tests cannot know its value", v, msg)
			}
		}
		return ""
	})
}

// flagValue returns the value of --name (or -name) in args, Go flag style.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "--" {
			break
		}
		for _, prefix := range []string{"--", "-"} {
			if v, ok := strings.CutPrefix(a, prefix+name+"="); ok {
				return v, true
			}
			if a == prefix+name && i+1 < len(args) {
				return args[i+1], true
			}
		}
	}
	return "", false
}

// replaceFlag sets the value of --name in args if it is there.
func replaceFlag(args []string, name, value string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		for _, prefix := range []string{"--", "-"} {
			if strings.HasPrefix(a, prefix+name+"=") {
				out[i] = prefix + name + "=" + value
			}
			if a == prefix+name && i+1 < len(out) {
				out[i+1] = value
			}
		}
	}
	return out
}

// oneShot reports whether a service runs to completion rather than staying
// up: every command of enqueue and of demo does; only worker stays up.
func oneShot(t *testing.T, c *composeFile, s *service, ep []string) bool {
	return c.ourImage(s) && binaryOf(t, s.name, argvOf(t, s, ep)) != workerBin
}

// startOrder returns the services in an order that respects depends_on,
// failing on a cycle.
func startOrder(t *testing.T, c *composeFile) []string {
	t.Helper()
	var order []string
	done := map[string]bool{}
	for len(order) < len(c.Services) {
		var ready []string
		for name, s := range c.Services {
			if done[name] {
				continue
			}
			if !slices.ContainsFunc(keys(s.DependsOn), func(dep string) bool { return !done[dep] }) {
				ready = append(ready, name)
			}
		}
		require.NotEmpty(t, ready, "depends_on has a cycle among %v", slices.DeleteFunc(keys(c.Services), func(n string) bool { return done[n] }))
		sort.Strings(ready)
		for _, name := range ready {
			done[name] = true
		}
		order = append(order, ready...)
	}
	return order
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// dependsOnTransitively reports whether s depends, directly or not, on target.
func dependsOnTransitively(c *composeFile, s *service, target string) bool {
	seen := map[string]bool{}
	var walk func(*service) bool
	walk = func(s *service) bool {
		for dep := range s.DependsOn {
			if dep == target {
				return true
			}
			if !seen[dep] && c.Services[dep] != nil {
				seen[dep] = true
				if walk(c.Services[dep]) {
					return true
				}
			}
		}
		return false
	}
	return walk(s)
}

func TestComposeStructure(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	ep := loadDockerfile(t).entrypoint(t)

	t.Run("keys", func(t *testing.T) {
		for k := range c.raw {
			require.NotEqual(t, "version", k, "the top-level version key is obsolete; Compose warns about it")
			require.True(t, knownTopKeys[k] || strings.HasPrefix(k, "x-"), "unknown top-level key %q", k)
		}
		rawServices, ok := c.raw["services"].(map[string]any)
		require.True(t, ok)
		for name, raw := range rawServices {
			m, ok := raw.(map[string]any)
			require.True(t, ok, "service %s must be a map", name)
			for k := range m {
				require.True(t, knownServiceKeys[k] || strings.HasPrefix(k, "x-"), "service %s: unknown key %q (if Compose knows it, add it to knownServiceKeys)", name, k)
			}
		}
	})

	t.Run("roles", func(t *testing.T) {
		pg := c.Services["postgres"]
		require.NotNil(t, pg, "a postgres service is required")
		require.True(t, strings.HasPrefix(pg.Image, "postgres:16"), "postgres must run postgres:16, got %q", pg.Image)
		require.NotNil(t, pg.Healthcheck, "postgres needs a healthcheck")
		require.Contains(t, pg.Healthcheck.words(), "pg_isready", "postgres's healthcheck must use pg_isready")
		pgEnv := pg.Environment
		trust := pgEnv["POSTGRES_HOST_AUTH_METHOD"] == "trust"
		require.True(t, trust || pgEnv["POSTGRES_PASSWORD"] != "" || pgEnv["POSTGRES_PASSWORD_FILE"] != "",
			"the postgres image refuses to start without POSTGRES_PASSWORD or POSTGRES_HOST_AUTH_METHOD=trust")
		if pw := pgEnv["POSTGRES_PASSWORD"]; pw != "" {
			require.Regexp(t, `(?i)demo|example`, pw, "POSTGRES_PASSWORD must be an obvious demo value, never a real password")
		}

		rd := c.Services["redis"]
		require.NotNil(t, rd, "a redis service is required")
		require.True(t, strings.HasPrefix(rd.Image, "redis:7"), "redis must run redis:7, got %q", rd.Image)
		require.NotNil(t, rd.Healthcheck, "redis needs a healthcheck")
		hc := rd.Healthcheck.words()
		require.Contains(t, hc, "redis-cli", "redis's healthcheck must be redis-cli ping")
		require.Contains(t, hc, "ping", "redis's healthcheck must be redis-cli ping")

		// demo runs "demo setup"; migrate runs "enqueue migrate" after it;
		// pending runs "enqueue pending" after migrate; worker runs "worker"
		// after all three.
		want := map[string][]string{"demo": {demoBin, "setup"}, "migrate": {enqueueBin, "migrate"}, "pending": {enqueueBin, "pending"}}
		for name, cmd := range want {
			s := c.Services[name]
			require.NotNil(t, s, "a %s service is required", name)
			require.True(t, c.ourImage(s), "service %s must run our image (build: .)", name)
			words := argvOf(t, s, ep)
			binaryOf(t, name, words)
			require.GreaterOrEqual(t, len(words), 2, "service %s must run %q", name, strings.Join(cmd, " "))
			require.Equal(t, cmd, []string{path.Base(words[0]), words[1]}, "service %s must run %q", name, strings.Join(cmd, " "))
		}
		require.Equal(t, "service_completed_successfully", c.Services["migrate"].DependsOn["demo"], "migrate must run after demo succeeded: demo setup recreates the schema migrate installs River's tables in")
		require.Equal(t, "service_completed_successfully", c.Services["pending"].DependsOn["migrate"], "pending must run after migrate succeeded")

		w := c.Services["worker"]
		require.NotNil(t, w, "a worker service is required")
		require.True(t, c.ourImage(w), "the worker must run our image (build: .)")
		require.Equal(t, workerBin, binaryOf(t, "worker", argvOf(t, w, ep)))
		for _, dep := range []string{"postgres", "redis"} {
			require.Equal(t, "service_healthy", w.DependsOn[dep], "the worker must wait for %s to be healthy", dep)
		}
		for _, dep := range []string{"demo", "migrate", "pending"} {
			require.True(t, dependsOnTransitively(c, w, dep), "the worker must start after %s", dep)
		}
	})

	t.Run("scalable worker", func(t *testing.T) {
		w := c.Services["worker"]
		require.NotNil(t, w)
		require.Empty(t, w.ContainerName, "the worker must not set container_name: --scale worker=N needs generated names")
		require.Empty(t, w.Ports, "the worker must not publish ports: replicas would fight over them")
		require.Equal(t, "unless-stopped", w.Restart, "the worker must have restart: unless-stopped")
		if w.StopSignal != "" {
			require.Contains(t, []string{"SIGTERM", "SIGINT", "TERM", "INT"}, w.StopSignal, "the worker stops gracefully on SIGTERM or SIGINT only")
		}

		shutdown := jobs.ShutdownTimeoutDefault
		if v, ok := flagValue(argvOf(t, w, ep)[1:], "shutdown-timeout"); ok {
			var err error
			shutdown, err = time.ParseDuration(v)
			require.NoError(t, err, "worker --shutdown-timeout")
		}
		require.NotEmpty(t, w.StopGracePeriod, "the worker needs a stop_grace_period longer than --shutdown-timeout (%s); the default 10s kills it mid-batch", shutdown)
		grace, err := time.ParseDuration(interpolate(t, w.StopGracePeriod))
		require.NoError(t, err, "worker stop_grace_period")
		require.Greater(t, grace, shutdown+hardStopWindow,
			"stop_grace_period (%s) must exceed --shutdown-timeout (%s) plus the %s in which the worker cancels what is left", grace, shutdown, hardStopWindow)
	})

	t.Run("depends_on", func(t *testing.T) {
		startOrder(t, c) // no cycles
		for _, name := range keys(c.Services) {
			s := c.Services[name]
			for _, dep := range keys(s.DependsOn) {
				target := c.Services[dep]
				require.NotNil(t, target, "service %s depends on %s, which does not exist", name, dep)
				cond := s.DependsOn[dep]
				switch {
				case target.Healthcheck != nil && !target.Healthcheck.Disable:
					require.Equal(t, "service_healthy", cond, "service %s must wait for %s (which has a healthcheck) with condition: service_healthy", name, dep)
				case oneShot(t, c, target, ep):
					require.Equal(t, "service_completed_successfully", cond, "service %s must wait for the one-shot %s with condition: service_completed_successfully", name, dep)
				default:
					t.Fatalf("service %s depends on %s, which has no healthcheck and is no one-shot step: nothing says when it is ready", name, dep)
				}
			}
		}
	})

	t.Run("durations", func(t *testing.T) {
		for _, name := range keys(c.Services) {
			s := c.Services[name]
			ds := map[string]string{"stop_grace_period": s.StopGracePeriod}
			if h := s.Healthcheck; h != nil {
				ds["healthcheck.interval"], ds["healthcheck.timeout"], ds["healthcheck.start_period"] = h.Interval, h.Timeout, h.StartPeriod
			}
			for key, d := range ds {
				if d != "" {
					_, err := time.ParseDuration(interpolate(t, d))
					require.NoError(t, err, "service %s: %s", name, key)
				}
			}
		}
	})

	t.Run("restart", func(t *testing.T) {
		for _, name := range keys(c.Services) {
			r := c.Services[name].Restart
			policy, count, hasCount := strings.Cut(r, ":")
			ok := slices.Contains([]string{"", "no", "always", "unless-stopped"}, r) ||
				policy == "on-failure" && (!hasCount || regexp.MustCompile(`^[0-9]+$`).MatchString(count))
			require.True(t, ok, "service %s: restart %q: want no, always, unless-stopped or on-failure[:N]", name, r)
		}
	})

	t.Run("one-shot steps", func(t *testing.T) {
		for _, name := range keys(c.Services) {
			s := c.Services[name]
			if !oneShot(t, c, s, ep) {
				continue
			}
			// A restarting one-shot step runs again and again, and never
			// counts as completed.
			require.Contains(t, []string{"", "no", "on-failure"}, strings.SplitN(s.Restart, ":", 2)[0],
				"one-shot service %s must not restart after it exits, got restart: %s", name, s.Restart)
			require.Empty(t, s.Profiles, "one-shot service %s must not be in a profile: the worker waits for it", name)
		}
	})

	t.Run("our image", func(t *testing.T) {
		d := loadDockerfile(t)
		for _, name := range keys(c.Services) {
			s := c.Services[name]
			if !c.ourImage(s) {
				continue
			}
			if s.Build != nil {
				ctxDir := filepath.Join(root(t), filepath.FromSlash(s.Build.Context))
				require.Equal(t, root(t), filepath.Clean(ctxDir), "service %s: the build context must be the repository root", name)
				df := s.Build.Dockerfile
				if df == "" {
					df = "Dockerfile"
				}
				_, err := os.Stat(filepath.Join(ctxDir, df))
				require.NoError(t, err, "service %s: Dockerfile", name)
			}
			require.Nil(t, s.EnvFile, "service %s: env_file hides values from these tests; use environment", name)
			words := argvOf(t, s, ep)
			binaryOf(t, name, words)
			if d.shellless() {
				require.NotContains(t, []string{"sh", "bash", "/bin/sh", "/bin/bash"}, words[0], "service %s: the image (%s) has no shell", name, d.final().From)
			}
			require.NotEmpty(t, s.Environment["DATABASE_URL"], "service %s needs DATABASE_URL", name)
		}
	})

	t.Run("URLs", func(t *testing.T) {
		for _, name := range keys(c.Services) {
			s := c.Services[name]
			if !c.ourImage(s) {
				continue
			}
			checkDatabaseURL(t, c, s, interpolate(t, s.Environment["DATABASE_URL"]))
			if v := s.Environment["REDIS_URL"]; v != "" {
				checkRedisURL(t, c, s, ep, interpolate(t, v))
			}
		}
	})

	t.Run("same database", func(t *testing.T) {
		// Every service of our image must see the same tables: one
		// DATABASE_URL and one PGOPTIONS (the search_path River's tables,
		// the version table and the demo's tables are found in).
		var first *service
		for _, name := range keys(c.Services) {
			s := c.Services[name]
			if !c.ourImage(s) {
				continue
			}
			if first == nil {
				first = s
				continue
			}
			for _, k := range []string{"DATABASE_URL", "PGOPTIONS", "BACKFILL_SCHEMA"} {
				require.Equal(t, interpolate(t, first.Environment[k]), interpolate(t, s.Environment[k]),
					"services %s and %s must have the same %s, or they work in different tables", first.name, s.name, k)
			}
		}
		require.NotNil(t, first, "no service runs our image")
		// The demo lives in its own schema: with a demo service, every
		// service of our image must have it on its search_path, as
		// scripts/demo does.
		if c.Services["demo"] != nil {
			opts := strings.Fields(interpolate(t, first.Environment["PGOPTIONS"]))
			require.Contains(t, opts, "search_path="+demo.Schema,
				"with the demo service, PGOPTIONS must be \"-c search_path=%s\" (the schema demo setup creates), got %q", demo.Schema, first.Environment["PGOPTIONS"])
			i := slices.Index(opts, "search_path="+demo.Schema)
			require.True(t, i > 0 && opts[i-1] == "-c", "PGOPTIONS: search_path=%s must follow -c, got %q", demo.Schema, first.Environment["PGOPTIONS"])
		}
	})

	t.Run("volumes", func(t *testing.T) {
		for _, name := range keys(c.Services) {
			for _, v := range c.Services[name].Volumes {
				var source string
				switch v := v.(type) {
				case string:
					source, _, _ = strings.Cut(v, ":")
				case map[string]any:
					if v["type"] != "volume" {
						continue
					}
					source, _ = v["source"].(string)
				}
				if source == "" || strings.ContainsAny(source[:1], "./~$") {
					continue // a bind mount
				}
				_, ok := c.Volumes[source]
				require.True(t, ok, "service %s mounts volume %s, which the top-level volumes do not declare", name, source)
			}
		}
	})
}

// checkDatabaseURL checks that s's DATABASE_URL parses and points at a
// postgres service of the file, healthy before s starts, with its user,
// database and password.
func checkDatabaseURL(t *testing.T, c *composeFile, s *service, raw string) {
	t.Helper()
	_, err := pgxpool.ParseConfig(raw)
	require.NoError(t, err, "service %s: DATABASE_URL does not parse", s.name)
	u, err := url.Parse(raw)
	require.NoError(t, err, "service %s: DATABASE_URL must be a URL", s.name)
	pg := c.Services[u.Hostname()]
	require.NotNil(t, pg, "service %s: DATABASE_URL names host %q, which is no service", s.name, u.Hostname())
	require.True(t, strings.HasPrefix(pg.Image, "postgres:"), "service %s: DATABASE_URL points at %s, which is not PostgreSQL", s.name, u.Hostname())
	require.Equal(t, "service_healthy", s.DependsOn[u.Hostname()], "service %s uses %s: it must depend on it with condition: service_healthy", s.name, u.Hostname())
	require.Contains(t, []string{"", "5432"}, u.Port(), "service %s: PostgreSQL listens on 5432 inside the network", s.name)

	env := pg.Environment
	user := cmp.Or(env["POSTGRES_USER"], "postgres")
	require.Equal(t, user, u.User.Username(), "service %s: DATABASE_URL's user must be %s's POSTGRES_USER", s.name, pg.name)
	require.Equal(t, "/"+cmp.Or(env["POSTGRES_DB"], user), u.Path, "service %s: DATABASE_URL's database must be %s's POSTGRES_DB", s.name, pg.name)
	pw, hasPW := u.User.Password()
	if env["POSTGRES_HOST_AUTH_METHOD"] != "trust" {
		require.True(t, hasPW, "service %s: %s wants a password; DATABASE_URL has none", s.name, pg.name)
		require.Equal(t, env["POSTGRES_PASSWORD"], pw, "service %s: DATABASE_URL's password must be %s's POSTGRES_PASSWORD", s.name, pg.name)
	}
	if hasPW {
		require.Regexp(t, `(?i)demo|example`, pw, "service %s: a password in docker-compose.yml must be an obvious demo value", s.name)
	}
}

// checkRedisURL checks that s's REDIS_URL parses and points at a redis
// service of the file, healthy before s starts.
func checkRedisURL(t *testing.T, c *composeFile, s *service, ep []string, raw string) {
	t.Helper()
	_, err := redis.ParseURL(raw)
	require.NoError(t, err, "service %s: REDIS_URL does not parse", s.name)
	u, err := url.Parse(raw)
	require.NoError(t, err)
	rd := c.Services[u.Hostname()]
	require.NotNil(t, rd, "service %s: REDIS_URL names host %q, which is no service", s.name, u.Hostname())
	require.True(t, strings.HasPrefix(rd.Image, "redis:"), "service %s: REDIS_URL points at %s, which is not Redis", s.name, u.Hostname())
	require.Contains(t, []string{"", "6379"}, u.Port(), "service %s: Redis listens on 6379 inside the network", s.name)
	if oneShot(t, c, s, ep) {
		return // enqueue and demo setup do not connect to Redis
	}
	require.Equal(t, "service_healthy", s.DependsOn[u.Hostname()], "service %s uses %s: it must depend on it with condition: service_healthy", s.name, u.Hostname())
}
