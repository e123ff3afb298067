package faults

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binaries are the worker and enqueue commands built from this module.
type Binaries struct {
	Worker  string
	Enqueue string
}

var (
	buildMu  sync.Mutex
	built    *Binaries
	buildDir string
)

// Build builds cmd/worker and cmd/enqueue once per test binary, into a
// temporary directory that RemoveBinaries deletes (call it from TestMain).
// A failed build is retried by the next caller.
func Build(t testing.TB) Binaries {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if built != nil {
		return *built
	}
	dir, err := os.MkdirTemp("", "faults-bin-")
	if err != nil {
		t.Fatalf("faults: %v", err)
	}
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"github.com/backfill/backfill/cmd/worker", "github.com/backfill/backfill/cmd/enqueue")
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("faults: building the binaries: %v\n%s", err, out)
	}
	buildDir = dir
	built = &Binaries{Worker: filepath.Join(dir, "worker"), Enqueue: filepath.Join(dir, "enqueue")}
	return *built
}

// RemoveBinaries deletes what Build built.
func RemoveBinaries() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	built, buildDir = nil, ""
}

// Result is the outcome of a command that ran to its end.
type Result struct {
	Stdout, Stderr string
	// Code is the exit code, -1 when the command did not run or was killed.
	Code int
}

// Output is stdout and stderr together, for messages.
func (r Result) Output() string { return strings.TrimSpace(r.Stdout + "\n" + r.Stderr) }

// Run runs the binary at path with args and env added to the environment,
// and waits for it at most timeout (then kills it).
func Run(t testing.TB, timeout time.Duration, env []string, path string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String(), Code: -1}
	var exit *exec.ExitError
	switch {
	case err == nil:
		res.Code = 0
	case errors.As(err, &exit) && exit.Exited():
		res.Code = exit.ExitCode()
	case ctx.Err() != nil:
		t.Fatalf("faults: %s %s did not finish within %s\n%s", filepath.Base(path), strings.Join(args, " "), timeout, res.Output())
	default:
		t.Fatalf("faults: running %s: %v\n%s", filepath.Base(path), err, res.Output())
	}
	return res
}

// Line is one line a process wrote, with when it was written.
type Line struct {
	At   time.Time
	Text string
}

// LineLog collects a process's output line by line with timestamps.
type LineLog struct {
	mu      sync.Mutex
	lines   []Line
	partial []byte
}

// Write implements io.Writer.
func (l *LineLog) Write(p []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, Line{At: now, Text: string(l.partial[:i])})
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

// Lines returns the complete lines so far.
func (l *LineLog) Lines() []Line {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Line(nil), l.lines...)
}

// Between returns the lines written from from up to to.
func (l *LineLog) Between(from, to time.Time) []Line {
	var out []Line
	for _, ln := range l.Lines() {
		if !ln.At.Before(from) && !ln.At.After(to) {
			out = append(out, ln)
		}
	}
	return out
}

// String is the whole output.
func (l *LineLog) String() string {
	var b strings.Builder
	for _, ln := range l.Lines() {
		b.WriteString(ln.At.Format("15:04:05.000"))
		b.WriteString(" | ")
		b.WriteString(ln.Text)
		b.WriteByte('\n')
	}
	l.mu.Lock()
	b.Write(l.partial)
	l.mu.Unlock()
	return b.String()
}

// Process is a running worker (or other long-running binary).
type Process struct {
	Name string
	Cmd  *exec.Cmd
	// Stderr is where the worker logs; Stdout is kept apart.
	Stderr, Stdout *LineLog

	exited chan struct{}
	err    error
}

// StartWorker starts the worker binary with env added to the environment
// (DATABASE_URL=..., REDIS_URL=...) and args. It is killed when t ends if it
// is still running; its output is logged when t failed.
func StartWorker(t testing.TB, bins Binaries, name string, env []string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bins.Worker, args...)
	cmd.Env = append(os.Environ(), env...)
	// Gone with the test process even when it dies without its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &Process{Name: name, Cmd: cmd, Stderr: &LineLog{}, Stdout: &LineLog{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Stdout, p.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("faults: starting worker %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("worker %s (pid %d) stderr:\n%s", name, cmd.Process.Pid, p.Stderr.String())
		}
	})
	return p
}

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Err is the process's result once it exited: nil for exit code 0.
func (p *Process) Err() error {
	<-p.exited
	return p.err
}

// ExitCode is the process's exit code once it exited, -1 when a signal
// killed it.
func (p *Process) ExitCode() int {
	<-p.exited
	return p.Cmd.ProcessState.ExitCode()
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// Stop sends SIGTERM and waits at most timeout for the process to exit. It
// returns how long it took and false when it did not exit in time.
func (p *Process) Stop(timeout time.Duration) (time.Duration, bool) {
	started := time.Now()
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return 0, false
	}
	select {
	case <-p.exited:
		return time.Since(started), true
	case <-time.After(timeout):
		return time.Since(started), false
	}
}
