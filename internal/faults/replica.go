package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Replication is a streaming replica as its primary's pg_stat_replication
// shows it.
type Replication struct {
	// Name is the replica's application_name.
	Name string
	// State is "startup", "catchup", "streaming", ...
	State string
	// ReplayLag is pg_stat_replication.replay_lag; nil while it is NULL
	// (the replica replayed everything and said so twice, or it has not
	// replied yet).
	ReplayLag *time.Duration
	// SentLSN and ReplayLSN are the WAL positions sent to the replica and
	// replayed by it.
	SentLSN, ReplayLSN string
}

// NewReplica starts a streaming replica of primary, named name (its
// application_name in the primary's pg_stat_replication), and stops it and
// removes its files when t ends. It is a hot standby: a private cluster of
// its own (its own directory and port) cloned with "pg_basebackup -R" from
// the primary, with the primary's server binaries, that reports its
// positions every second (wal_receiver_status_interval = 1s), so that the
// primary's replay_lag follows a stalled replay within about a second.
// NewReplica returns once the primary sees it streaming.
//
// It makes sure the primary accepts replication connections from
// 127.0.0.1 (wal_level, max_wal_senders, pg_hba.conf) first: NewPG's
// cluster does by initdb's defaults, so that normally changes nothing.
// When pg_basebackup is missing it skips t (fails it in CI).
func NewReplica(t testing.TB, primary *PG, name string) *PG {
	t.Helper()
	if !isExecutable(filepath.Join(primary.bin, "pg_basebackup")) {
		Missing(t, "pg_basebackup is not installed next to %s (apt-get install postgresql)", filepath.Join(primary.bin, "pg_ctl"))
	}
	if err := primary.allowReplication(); err != nil {
		t.Fatalf("faults: letting the private cluster take a replica: %v", err)
	}
	r := &PG{t: t, bin: primary.bin, runAs: primary.runAs}
	dir, err := os.MkdirTemp("", "faults-replica-")
	if err != nil {
		t.Fatalf("faults: %v", err)
	}
	r.dir, r.data, r.logFile = dir, filepath.Join(dir, "data"), filepath.Join(dir, "server.log")
	t.Cleanup(func() {
		r.mu.Lock()
		running := r.running
		r.mu.Unlock()
		if running {
			if err := r.Stop(Immediate); err != nil {
				t.Errorf("faults: stopping the replica %s: %v", name, err)
			}
		}
		if t.Failed() {
			if b, err := os.ReadFile(r.logFile); err == nil {
				t.Logf("replica %s log (last 4000 bytes):\n%s", name, tail(b, 4000))
			}
		}
		_ = os.RemoveAll(dir)
	})
	if err := primary.chownToRunAs(dir); err != nil {
		t.Fatalf("faults: %v", err)
	}
	if r.port, err = freePort(); err != nil {
		t.Fatalf("faults: %v", err)
	}
	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=%s", primary.port, name)
	// -c fast: no waiting for a spread checkpoint; -X stream: the WAL of
	// the copy comes along; -R: standby.signal and primary_conninfo.
	if out, err := r.command("pg_basebackup", "-D", r.data, "-d", conninfo, "-R", "-X", "stream",
		"-c", "fast", "--no-sync", "-w").CombinedOutput(); err != nil {
		t.Fatalf("faults: pg_basebackup from the private cluster: %v\n%s", err, out)
	}
	// The copy has the primary's postgresql.conf (its port and socket
	// directory): the settings appended here come later and win.
	conf := fmt.Sprintf(`
# internal/faults: a streaming replica of a private test cluster.
port = %d
unix_socket_directories = '%s'
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = 1s
`, r.port, r.dir)
	// postgresql.auto.conf (where -R wrote primary_conninfo) is read after
	// postgresql.conf: the connection goes there, after -R's.
	auto := fmt.Sprintf("primary_conninfo = '%s'\n", strings.ReplaceAll(conninfo, "'", "''"))
	if err := appendFile(filepath.Join(r.data, "postgresql.conf"), conf); err != nil {
		t.Fatalf("faults: configuring the replica: %v", err)
	}
	if err := appendFile(filepath.Join(r.data, "postgresql.auto.conf"), auto); err != nil {
		t.Fatalf("faults: configuring the replica: %v", err)
	}
	r.startWatchdog()
	if err := r.Start(); err != nil {
		t.Fatalf("faults: starting the replica %s: %v", name, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rep, err := primary.Replication(name)
		if err == nil && rep.State == "streaming" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("faults: the replica %s is not streaming from the private cluster within 30s (%+v, %v)\nreplica log:\n%s",
				name, rep, err, tail([]byte(r.Log()), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return r
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// chownToRunAs gives path to the OS user the binaries run as, if another.
func (p *PG) chownToRunAs(path string) error {
	if p.runAs == "" {
		return nil
	}
	u, err := user.Lookup(p.runAs)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}

// allowReplication makes sure the cluster takes a streaming replica
// connecting as postgres from 127.0.0.1 without a password: wal_level
// replica or logical and max_wal_senders above 0 (restarting the server
// when it must change them), and a trust line for replication connections
// from 127.0.0.1 at the top of pg_hba.conf when no such line is there.
func (p *PG) allowReplication() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var walLevel, senders string
	if err := conn.QueryRow(ctx, `SELECT current_setting('wal_level'), current_setting('max_wal_senders')`).Scan(&walLevel, &senders); err != nil {
		return err
	}
	restart := false
	if walLevel == "minimal" {
		if _, err := conn.Exec(ctx, `ALTER SYSTEM SET wal_level = replica`); err != nil {
			return err
		}
		restart = true
	}
	if n, _ := strconv.Atoi(senders); n < 2 {
		// One for the replica, one for a pg_basebackup -X stream.
		if _, err := conn.Exec(ctx, `ALTER SYSTEM SET max_wal_senders = 10`); err != nil {
			return err
		}
		restart = true
	}
	var trusted bool
	if err := conn.QueryRow(ctx, `
SELECT EXISTS (SELECT 1 FROM pg_hba_file_rules
	WHERE error IS NULL AND type IN ('host', 'hostnossl') AND auth_method = 'trust'
	AND 'replication' = ANY(database) AND ('all' = ANY(user_name) OR 'postgres' = ANY(user_name))
	AND (address = '127.0.0.1' OR address = 'all'))`).Scan(&trusted); err != nil {
		return fmt.Errorf("reading pg_hba_file_rules: %w", err)
	}
	if !trusted {
		hba := filepath.Join(p.data, "pg_hba.conf")
		old, err := os.ReadFile(hba)
		if err != nil {
			return err
		}
		line := "# internal/faults: streaming replicas of a private test cluster.\nhost replication all 127.0.0.1/32 trust\n"
		if err := os.WriteFile(hba, append([]byte(line), old...), 0o600); err != nil {
			return err
		}
		if !restart {
			if _, err := conn.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
				return err
			}
		}
	}
	if restart {
		conn.Close(ctx)
		return p.Restart(Fast)
	}
	return nil
}

// Replication returns the streaming replica named name as the cluster's
// pg_stat_replication shows it; an error when it is not there.
func (p *PG) Replication(name string) (Replication, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL("postgres")+"&connect_timeout=2")
	if err != nil {
		return Replication{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rep := Replication{Name: name}
	var lagSeconds *float64
	err = conn.QueryRow(ctx, `
SELECT state, extract(epoch FROM replay_lag)::float8, coalesce(sent_lsn::text, ''), coalesce(replay_lsn::text, '')
FROM pg_stat_replication WHERE application_name = $1 ORDER BY backend_start DESC LIMIT 1`, name).
		Scan(&rep.State, &lagSeconds, &rep.SentLSN, &rep.ReplayLSN)
	if errors.Is(err, pgx.ErrNoRows) {
		return rep, fmt.Errorf("no replica %s in pg_stat_replication", name)
	}
	if err != nil {
		return rep, err
	}
	if lagSeconds != nil {
		d := time.Duration(*lagSeconds * float64(time.Second))
		rep.ReplayLag = &d
	}
	return rep, nil
}

// PauseReplay pauses the replay of WAL on a replica
// (pg_wal_replay_pause()): it keeps receiving WAL, and its primary's
// replay_lag grows from then on.
func (p *PG) PauseReplay() error { return p.execOnce(`SELECT pg_wal_replay_pause()`) }

// ResumeReplay resumes the replay of WAL on a replica
// (pg_wal_replay_resume()).
func (p *PG) ResumeReplay() error { return p.execOnce(`SELECT pg_wal_replay_resume()`) }

func (p *PG) execOnce(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL("postgres")+"&connect_timeout=2")
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}
