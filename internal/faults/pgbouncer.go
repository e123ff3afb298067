package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PgBouncer is a real PgBouncer (Debian's pgbouncer binary) in front of a
// private cluster: a child process of the test on its own port on
// 127.0.0.1, with a generated configuration in a temporary directory. By
// default it pools in transaction mode, so a client's consecutive
// transactions may run on different server connections and a server
// connection is shared by many clients: session state (prepared
// statements, session advisory locks, SET, LISTEN) does not follow the
// client.
type PgBouncer struct {
	t    testing.TB
	bin  string
	dir  string
	ini  string
	log  string
	port int
	pg   *PG

	poolMode string
	poolSize int
	maxConns int
	extra    []string

	uid, gid int  // OS user it runs as when the test runs as root
	asUser   bool // uid/gid apply

	stderr *syncBuffer

	child
}

// PgBouncerOption configures NewPgBouncer.
type PgBouncerOption func(*PgBouncer)

// PoolSize sets default_pool_size: the server connections per database and
// user (default 10).
func PoolSize(n int) PgBouncerOption { return func(b *PgBouncer) { b.poolSize = n } }

// PoolMode sets pool_mode: "transaction" (the default), "session" or
// "statement".
func PoolMode(mode string) PgBouncerOption { return func(b *PgBouncer) { b.poolMode = mode } }

// MaxClientConn sets max_client_conn (default 200).
func MaxClientConn(n int) PgBouncerOption { return func(b *PgBouncer) { b.maxConns = n } }

// PgBouncerSetting adds a line "key = value" to the [pgbouncer] section.
func PgBouncerSetting(key, value string) PgBouncerOption {
	return func(b *PgBouncer) { b.extra = append(b.extra, key+" = "+value) }
}

// PgBouncerBin finds the pgbouncer binary: on PATH, else in /usr/sbin
// (Debian's package puts it there, outside a non-root PATH). It returns ""
// when there is none.
func PgBouncerBin() string {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/local/bin/pgbouncer"} {
		if isExecutable(p) {
			return p
		}
	}
	return ""
}

// NewPgBouncer starts a PgBouncer in front of pg and stops it and removes
// its files when t ends. When pgbouncer is missing it skips t (fails it in
// CI). PgBouncer refuses to run as root: running as root, it runs as the OS
// user postgres.
func NewPgBouncer(t testing.TB, pg *PG, opts ...PgBouncerOption) *PgBouncer {
	t.Helper()
	bin := PgBouncerBin()
	if bin == "" {
		Missing(t, "pgbouncer is not installed (apt-get install pgbouncer)")
	}
	b := &PgBouncer{t: t, bin: bin, pg: pg, poolMode: "transaction", poolSize: 10, maxConns: 200, stderr: &syncBuffer{}, child: child{what: "pgbouncer"}}
	for _, o := range opts {
		o(b)
	}
	dir, err := os.MkdirTemp("", "faults-pgbouncer-")
	if err != nil {
		t.Fatalf("faults: %v", err)
	}
	b.dir, b.ini, b.log = dir, filepath.Join(dir, "pgbouncer.ini"), filepath.Join(dir, "pgbouncer.log")
	t.Cleanup(func() {
		_ = b.Stop()
		if t.Failed() {
			t.Logf("PgBouncer log (last 4000 bytes):\n%s", tail([]byte(b.Log()), 4000))
		}
		_ = os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			Missing(t, "running as root, and there is no OS user postgres to run pgbouncer as: %v", err)
		}
		b.uid, _ = strconv.Atoi(u.Uid)
		b.gid, _ = strconv.Atoi(u.Gid)
		b.asUser = true
	}
	if b.port, err = freePort(); err != nil {
		t.Fatalf("faults: %v", err)
	}
	if err := b.writeConfig(); err != nil {
		t.Fatalf("faults: configuring PgBouncer: %v", err)
	}
	b.startWatchdog()
	if err := b.Start(); err != nil {
		t.Fatalf("faults: %v", err)
	}
	return b
}

func (b *PgBouncer) writeConfig() error {
	ini := fmt.Sprintf(`; internal/faults: a private, disposable PgBouncer.
[databases]
* = host=127.0.0.1 port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
admin_users = postgres
stats_users = postgres
pool_mode = %s
max_client_conn = %d
default_pool_size = %d
min_pool_size = 0
reserve_pool_size = 0
ignore_startup_parameters = extra_float_digits
logfile = %s
log_connections = 0
log_disconnections = 0
`, b.pg.Port(), b.port, filepath.Join(b.dir, "userlist.txt"), b.poolMode, b.maxConns, b.poolSize, b.log)
	for _, l := range b.extra {
		ini += l + "\n"
	}
	files := map[string]string{
		b.ini: ini,
		// trust still wants the user listed.
		filepath.Join(b.dir, "userlist.txt"): `"postgres" ""` + "\n",
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	if b.asUser {
		for _, path := range []string{b.dir, b.ini, filepath.Join(b.dir, "userlist.txt")} {
			if err := os.Chown(path, b.uid, b.gid); err != nil {
				return err
			}
		}
	}
	return nil
}

// startWatchdog starts a shell, in a session of its own, that kills
// pgbouncer and removes its directory once the test process is gone
// without its cleanups (killed, or panicked on a test timeout). The
// process's parent-death signal covers most of that already; the watchdog
// also covers a pgbouncer started from a thread that has since exited.
func (b *PgBouncer) startWatchdog() {
	// Only a process whose command line names this directory's ini file.
	script := fmt.Sprintf(`while kill -0 %d 2>/dev/null; do sleep 1; done
for p in /proc/[0-9]*; do
	if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- %s; then kill -9 "${p#/proc/}" 2>/dev/null; fi
done
rm -rf %s`, os.Getpid(), shellQuote(b.ini), shellQuote(b.dir))
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		b.t.Logf("faults: no watchdog for PgBouncer: %v", err)
		return
	}
	go func() { _ = cmd.Wait() }()
	b.t.Cleanup(func() { _ = cmd.Process.Kill() })
}

// Port is the port PgBouncer listens on.
func (b *PgBouncer) Port() int { return b.port }

// URL is the connection URL of database db through PgBouncer, as user
// postgres.
func (b *PgBouncer) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", b.port, db)
}

// AdminURL is the URL of PgBouncer's admin console (database pgbouncer).
// It understands only the simple query protocol.
func (b *PgBouncer) AdminURL() string {
	return b.URL("pgbouncer") + "&default_query_exec_mode=simple_protocol"
}

// Log returns PgBouncer's log so far.
func (b *PgBouncer) Log() string {
	out, _ := os.ReadFile(b.log)
	if len(out) == 0 {
		// Nothing in the file (it could not open it, say): what it wrote
		// to stderr, which has the same lines in the foreground.
		return b.stderr.String()
	}
	return string(out)
}

// Start starts PgBouncer (again, on the same port and configuration) and
// returns once a query through it reaches the cluster.
func (b *PgBouncer) Start() error {
	cmd := exec.Command(b.bin, b.ini)
	cmd.Dir = b.dir
	cmd.Stdout, cmd.Stderr = b.stderr, b.stderr
	if b.asUser {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(b.uid), Gid: uint32(b.gid)}}
		cmd.Env = append(os.Environ(), "HOME="+b.dir, "USER=postgres", "LOGNAME=postgres")
	}
	if err := b.start(cmd); err != nil {
		return err
	}
	return b.waitReady(b.ping, b.Log)
}

// ping runs SELECT 1 on the cluster through PgBouncer.
func (b *PgBouncer) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, b.URL("postgres")+"&default_query_exec_mode=simple_protocol")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "SELECT 1")
	return err
}

// Stop shuts PgBouncer down at once (SIGTERM: client and server
// connections are closed) and returns once it is gone; after 10 s it is
// killed.
func (b *PgBouncer) Stop() error { return b.signal(syscall.SIGTERM, 10*time.Second) }

// Kill kills PgBouncer with SIGKILL and returns once it is gone.
func (b *PgBouncer) Kill() error { return b.signal(syscall.SIGKILL, 0) }

// PoolStats is one row of PgBouncer's SHOW POOLS: clients and server
// connections of one database and user.
type PoolStats struct {
	Database, User                           string
	ClientsActive, ClientsWaiting            int
	ServersActive, ServersIdle, ServersUsed  int
	ServersTested, ServersLogin, MaxWaitSecs int
}

// Servers is the number of server connections the pool holds.
func (p PoolStats) Servers() int {
	return p.ServersActive + p.ServersIdle + p.ServersUsed + p.ServersTested + p.ServersLogin
}

// Pools runs SHOW POOLS on the admin console.
func (b *PgBouncer) Pools(ctx context.Context) ([]PoolStats, error) {
	conn, err := pgx.Connect(ctx, b.AdminURL())
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SHOW POOLS")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	var out []PoolStats
	for rows.Next() {
		var p PoolStats
		ints := map[string]*int{
			"cl_active": &p.ClientsActive, "cl_waiting": &p.ClientsWaiting,
			"sv_active": &p.ServersActive, "sv_idle": &p.ServersIdle, "sv_used": &p.ServersUsed,
			"sv_tested": &p.ServersTested, "sv_login": &p.ServersLogin, "maxwait": &p.MaxWaitSecs,
		}
		for i, raw := range rows.RawValues() {
			name := fields[i].Name
			switch {
			case name == "database":
				p.Database = string(raw)
			case name == "user":
				p.User = string(raw)
			case ints[name] != nil:
				*ints[name], _ = strconv.Atoi(strings.TrimSpace(string(raw)))
			}
		}
		out = append(out, p)
	}
	return out, rows.Err()
}
