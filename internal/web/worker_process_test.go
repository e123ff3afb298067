package web

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
)

// workerBinary builds cmd/worker into the test's temporary directory.
func workerBinary(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "worker")
	out, err := exec.Command("go", "build", "-o", path, "github.com/backfill/backfill/cmd/worker").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return path
}

// lockedBuffer collects a process's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var listeningLine = regexp.MustCompile(`msg="http listening" addr=(\S+)`)

func TestWorkerProcess_ServesHTTPAndStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 300, "-- batch: 100\n")
	bin := workerBinary(t)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--http", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+f.url, "HTTP_TOKEN="+testToken)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	var logs lockedBuffer
	cmd.Stdout = &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	addrs := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(&logs, sc.Text())
			if m := listeningLine.FindStringSubmatch(sc.Text()); m != nil {
				addrs <- m[1]
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("worker output:\n%s", logs.String())
		}
	})

	var addr string
	select {
	case addr = <-addrs:
	case <-time.After(30 * time.Second):
		t.Fatalf("the worker never logged its address:\n%s", logs.String())
	}
	base := "http://" + addr
	get := func(path string) (int, string) {
		res, err := http.Get(base + path)
		require.NoError(t, err)
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res.StatusCode, string(body)
	}

	code, body := get("/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
	code, body = get("/api/config")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"actions": true}`, body, "HTTP_TOKEN enables the actions")
	f.waitState(t, batches.StateCompleted, 30*time.Second)
	// The worker passes the web Observer to its batch workers.
	require.Eventually(t, func() bool {
		_, body = get("/metrics")
		return strings.Contains(body, `backfill_rows_done_total{name="touch",version="9"} 300`)
	}, 5*time.Second, 20*time.Millisecond, "metrics of the worker's batches")
	code, body = get("/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "<title>Backfills</title>")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "exit 0 on SIGTERM")
	case <-time.After(20 * time.Second):
		t.Fatal("the worker did not exit within 20s of SIGTERM")
	}
	_, err = (&http.Client{Timeout: time.Second}).Get(base + "/healthz")
	require.Error(t, err, "the HTTP server stops with the worker")
	require.NotContains(t, logs.String(), testToken, "the token is never logged")
}
