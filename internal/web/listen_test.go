package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestListen_ServesUntilShutdownAndReportsATakenPort(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hi") })
	srv, err := Listen("127.0.0.1:0", h, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	addr := srv.Addr().String()

	res, err := http.Get("http://" + addr + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, "hi", string(body))

	_, err = Listen(addr, h, slog.New(slog.DiscardHandler))
	require.Error(t, err, "the port is taken")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))
	_, err = (&http.Client{Timeout: time.Second}).Get("http://" + addr + "/")
	require.Error(t, err, "nothing listens after Shutdown")
}

func TestCheckAddr(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{":8080", "127.0.0.1:0", "[::1]:9090", "localhost:http"} {
		require.NoError(t, CheckAddr(ok), ok)
	}
	for _, bad := range []string{"8080", "127.0.0.1", ":99999", ":-1", "http://x:80"} {
		require.Error(t, CheckAddr(bad), bad)
	}
}
