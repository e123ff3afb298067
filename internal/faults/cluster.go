package faults

import (
	"bytes"
	"context"
	"fmt"
	"github.com/backfill/backfill/internal/testdb"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Missing skips t when a program the fault tests need is not installed, and
// fails it in CI (CI=true), where .ci/run installs everything.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("faults: %s (CI=true: .ci/run must install it)", msg)
	}
	t.Skipf("faults: %s", msg)
}

// freePort returns a TCP port on 127.0.0.1 that nothing listened on a moment
// ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StopMode is how pg_ctl stops the server.
type StopMode string

const (
	// Fast disconnects clients, rolls back their transactions and shuts down
	// cleanly.
	Fast StopMode = "fast"
	// Immediate kills every server process without a shutdown: a crash, with
	// recovery from the WAL at the next start.
	Immediate StopMode = "immediate"
)

// PG is a private PostgreSQL cluster: its own data directory in a temporary
// directory and its own port on 127.0.0.1, trust authentication, fsync off.
// Tests may stop, crash and restart it without touching the shared server.
type PG struct {
	t       testing.TB
	bin     string // directory of initdb, pg_ctl
	dir     string // everything lives here; removed at the end
	data    string
	logFile string
	port    int
	runAs   string // OS user the binaries run as ("" for the current one)

	mu       sync.Mutex
	running  bool
	watchdog *exec.Cmd
}

// PGBinDir finds the server binaries (initdb, pg_ctl) of the newest installed
// major version, under /usr/lib/postgresql/*/bin (Debian's layout), else on
// PATH. It returns "" when there are none.
func PGBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "pg_ctl")) && isExecutable(filepath.Join(d, "postgres")) {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(p)
		if isExecutable(filepath.Join(d, "pg_ctl")) {
			return d
		}
	}
	return ""
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// NewPG initialises and starts a private cluster, and stops it and removes
// its files when t ends. When the server binaries are missing it skips t
// (fails it in CI). Running as root, the binaries run as the OS user
// postgres, since initdb refuses root.
func NewPG(t testing.TB) *PG {
	t.Helper()
	bin := PGBinDir()
	if bin == "" {
		Missing(t, "the PostgreSQL server binaries (initdb, pg_ctl) are not installed (apt-get install postgresql)")
	}
	p := &PG{t: t, bin: bin}
	dir, err := os.MkdirTemp("", "faults-pg-")
	if err != nil {
		t.Fatalf("faults: %v", err)
	}
	p.dir, p.data, p.logFile = dir, filepath.Join(dir, "data"), filepath.Join(dir, "server.log")
	t.Cleanup(func() {
		p.mu.Lock()
		running := p.running
		p.mu.Unlock()
		if running {
			if err := p.Stop(Immediate); err != nil {
				t.Errorf("faults: stopping the private PostgreSQL: %v", err)
			}
		}
		if t.Failed() {
			if b, err := os.ReadFile(p.logFile); err == nil {
				t.Logf("private PostgreSQL log (last 4000 bytes):\n%s", tail(b, 4000))
			}
		}
		_ = os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			Missing(t, "running as root, and there is no OS user postgres to run initdb as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("faults: %v", err)
		}
		p.runAs = "postgres"
	}
	if p.port, err = freePort(); err != nil {
		t.Fatalf("faults: %v", err)
	}
	if out, err := p.command("initdb", "-D", p.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--no-locale", "--no-sync", "--no-instructions").CombinedOutput(); err != nil {
		t.Fatalf("faults: initdb: %v\n%s", err, out)
	}
	conf := fmt.Sprintf(`
# internal/faults: a private, disposable test cluster.
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
max_connections = 100
shared_buffers = 16MB
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
`, p.port, p.dir)
	f, err := os.OpenFile(filepath.Join(p.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(conf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("faults: configuring the private cluster: %v", err)
	}
	p.startWatchdog()
	if err := p.Start(); err != nil {
		t.Fatalf("faults: %v", err)
	}
	return p
}

// startWatchdog starts a shell, in a session of its own, that stops the
// cluster and removes its directory once the test process is gone without
// its cleanups (killed, or panicked on a test timeout): pg_ctl runs the
// server as a daemon, which would outlive it.
func (p *PG) startWatchdog() {
	stop := p.command("pg_ctl", "-D", p.data, "-m", "immediate", "-w", "stop")
	script := fmt.Sprintf(`while kill -0 %d 2>/dev/null; do sleep 1; done; %s >/dev/null 2>&1; rm -rf %s`,
		os.Getpid(), quoteArgs(stop.Args), shellQuote(p.dir))
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		p.t.Logf("faults: no watchdog for the private cluster: %v", err)
		return
	}
	go func() { _ = cmd.Wait() }()
	p.watchdog = cmd
	p.t.Cleanup(func() { _ = cmd.Process.Kill() })
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// command runs one of the server binaries, as the postgres OS user when the
// test runs as root.
func (p *PG) command(name string, args ...string) *exec.Cmd {
	path := filepath.Join(p.bin, name)
	if p.runAs == "" {
		return exec.Command(path, args...)
	}
	if _, err := exec.LookPath("runuser"); err == nil {
		return exec.Command("runuser", append([]string{"-u", p.runAs, "--", path}, args...)...)
	}
	return exec.Command("su", p.runAs, "-s", "/bin/sh", "-c", quoteArgs(append([]string{path}, args...)))
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Port is the port the cluster listens on.
func (p *PG) Port() int { return p.port }

// URL is the connection URL of database db on the cluster, as user postgres.
func (p *PG) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

// Start starts the server and returns once it accepts connections.
func (p *PG) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if out, err := p.command("pg_ctl", "-D", p.data, "-l", p.logFile, "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl start: %v\n%s", err, out)
	}
	p.running = true
	return nil
}

// Stop stops the server in mode and returns once it is gone.
func (p *PG) Stop(mode StopMode) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	out, err := p.command("pg_ctl", "-D", p.data, "-m", string(mode), "-w", "-t", "60", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %v\n%s", mode, err, out)
	}
	p.running = false
	return nil
}

// Restart stops the server in mode and starts it again.
func (p *PG) Restart(mode StopMode) error {
	if err := p.Stop(mode); err != nil {
		return err
	}
	return p.Start()
}

// Log returns the server's log so far.
func (p *PG) Log() string {
	b, _ := os.ReadFile(p.logFile)
	return string(b)
}

// CreateDatabase creates database name and returns its URL.
func (p *PG) CreateDatabase(name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return p.URL(name), nil
}

// Pool opens a connection pool on database db that is closed when the test
// ends. It reconnects by itself after the server restarts; queries fail
// while it is down.
func (p *PG) Pool(db string) *pgxpool.Pool {
	p.t.Helper()
	cfg, err := pgxpool.ParseConfig(p.URL(db) + "&connect_timeout=2")
	if err != nil {
		p.t.Fatalf("faults: %v", err)
	}
	cfg.MaxConns = 4
	// The tests read the engine's tables by their plain names.
	cfg.ConnConfig.RuntimeParams["search_path"] = testdb.SearchPath
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		p.t.Fatalf("faults: connecting to the private cluster: %v", err)
	}
	p.t.Cleanup(pool.Close)
	return pool
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return b
}

// Redis is a private redis-server on its own port, a child process of the
// test. Without persistence (the default) a Kill loses its data, like a
// cache; with Persistent every write is in an append-only file synced before
// it is acknowledged, so a killed server comes back with everything it
// acknowledged.
type Redis struct {
	t          testing.TB
	bin        string
	dir        string
	port       int
	persistent bool

	logs *syncBuffer

	child
}

// RedisOption configures NewRedis.
type RedisOption func(*Redis)

// Persistent makes the server keep an append-only file, fsynced on every
// write, so that it survives Kill.
func Persistent() RedisOption { return func(r *Redis) { r.persistent = true } }

// NewRedis starts a private redis-server and kills it when t ends. When
// redis-server is missing it skips t (fails it in CI).
func NewRedis(t testing.TB, opts ...RedisOption) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		Missing(t, "redis-server is not installed (apt-get install redis-server)")
	}
	r := &Redis{t: t, bin: bin, logs: &syncBuffer{}, child: child{what: "redis-server"}}
	for _, o := range opts {
		o(r)
	}
	r.dir = t.TempDir()
	if r.port, err = freePort(); err != nil {
		t.Fatalf("faults: %v", err)
	}
	t.Cleanup(func() {
		_ = r.Kill()
		if t.Failed() {
			t.Logf("private redis-server log:\n%s", tail([]byte(r.logs.String()), 4000))
		}
	})
	if err := r.Start(); err != nil {
		t.Fatalf("faults: %v", err)
	}
	return r
}

// URL is the server's URL.
func (r *Redis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

// Client returns a client on the server, closed when the test ends.
func (r *Redis) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.port)})
	r.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Start starts the server (again, on the same port and directory) and
// returns once it answers PING.
func (r *Redis) Start() error {
	args := []string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--daemonize", "no", "--protected-mode", "no"}
	if r.persistent {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	cmd := exec.Command(r.bin, args...)
	cmd.Stdout, cmd.Stderr = r.logs, r.logs
	if err := r.start(cmd); err != nil {
		return err
	}
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.port), MaxRetries: -1})
	defer c.Close()
	return r.waitReady(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.Ping(ctx).Err()
	}, r.logs.String)
}

// Kill kills the server with SIGKILL and returns once it is gone.
func (r *Redis) Kill() error { return r.signal(syscall.SIGKILL, 0) }

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
