package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// requireHidden asserts that no part of password of 4 or more characters
// shows in text.
func requireHidden(t *testing.T, text, password, what string) {
	t.Helper()
	runes := []rune(password)
	for i := 0; i+4 <= len(runes); i++ {
		require.NotContains(t, text, string(runes[i:i+4]), "%s: %q shows part of the password %q", what, text, password)
	}
}

var redactCases = []struct {
	name, conn, password string
	want                 string // the display string, when the connection string parses
}{
	{"url", "postgres://u:Zq8vLw3kTy@db.example:6432/app?sslmode=disable", "Zq8vLw3kTy", "postgres://u:xxxxx@db.example:6432/app"},
	{"url without password", "postgres://u@127.0.0.1/x", "", "postgres://u@127.0.0.1:5432/x"},
	{"url percent-encoded", "postgres://u:Zq8%40vL%20w3k@db/app", "Zq8@vL w3k", "postgres://u:xxxxx@db:5432/app"},
	{"url password parameter", "postgres://u@db/app?password=Zq8vLw3kTy&sslmode=disable", "Zq8vLw3kTy", "postgres://u:xxxxx@db:5432/app"},
	{"url two hosts", "postgresql://u:Zq8vLw3kTy@a:5432,b:5433/app", "Zq8vLw3kTy", "postgres://u:xxxxx@a:5432,b:5433/app"},
	{"url ipv6", "postgres://u:Zq8vLw3kTy@[::1]:5432/app", "Zq8vLw3kTy", "postgres://u:xxxxx@[::1]:5432/app"},
	{"keyword/value", "host=db user=u password=Zq8vLw3kTy dbname=app", "Zq8vLw3kTy", "postgres://u:xxxxx@db:5432/app"},
	{"keyword/value escaped space", `host=x user=u password=S3cret\ PWtail`, "S3cret PWtail", "postgres://u:xxxxx@x:5432/"},
	{"keyword/value escaped spaces", `host=x user=u password=Zq8v\ Lw3k\ Ty9m dbname=app`, "Zq8v Lw3k Ty9m", "postgres://u:xxxxx@x:5432/app"},
	{"keyword/value quoted", `host=x user=u password='Zq8v Lw3k\'Ty9m' dbname=app`, "Zq8v Lw3k'Ty9m", "postgres://u:xxxxx@x:5432/app"},
	{"keyword/value spaced equals", `host=x user=u password = 'Zq8v Lw3k' dbname=app`, "Zq8v Lw3k", "postgres://u:xxxxx@x:5432/app"},
	{"keyword/value upper case key", `host=x user=u PASSWORD=Zq8vLw3kTy dbname=app`, "Zq8vLw3kTy", "postgres://u@x:5432/app"},
	{"unparsable url port", "postgres://u:Zq8vLw3kTy@127.0.0.1:notaport/x", "Zq8vLw3kTy", ""},
	{"unparsable url bracket", "postgres://u:Zq8vLw3kTy@[::1/x", "Zq8vLw3kTy", ""},
	{"unparsable url password with @ and /", "postgres://u:Zq8/vLw@3kTy@h:notaport/x", "Zq8/vLw@3kTy", ""},
	{"unparsable keyword/value", `host=x port=notaport user=u password=S3cret\ PWtail dbname=x`, "S3cret PWtail", ""},
	{"unparsable quoted", `host=x port=bad password='Zq8v Lw3k Ty9m`, "Zq8v Lw3k Ty9m", ""},
	{"unparsable sslpassword", `host=x port=bad sslpassword=Zq8vLw3kTy`, "Zq8vLw3kTy", ""},
	{"redis", "redis://:Zq8vLw3kTy@127.0.0.1:6379/0", "Zq8vLw3kTy", "redis://:xxxxx@127.0.0.1:6379/0"},
	{"redis user", "rediss://app:Zq8vLw3kTy@cache:6380/1?dial_timeout=1s", "Zq8vLw3kTy", "rediss://app:xxxxx@cache:6380/1?dial_timeout=1s"},
	{"redis password parameter", "redis://cache:6379/0?password=Zq8vLw3kTy", "Zq8vLw3kTy", "redis://cache:6379/0?password=xxxxx"},
}

func TestRedact(t *testing.T) {
	t.Setenv("PGPASSWORD", "")
	t.Setenv("PGPASSFILE", "/nonexistent")
	for _, tc := range redactCases {
		t.Run(tc.name, func(t *testing.T) {
			got := Redact(tc.conn)
			requireHidden(t, got, tc.password, "Redact")
			if tc.want != "" {
				require.Equal(t, tc.want, got)
			} else {
				require.Contains(t, got, "xxxxx", "what does not parse is hidden")
			}
		})
	}
}

// The messages of the libraries, which may quote the connection string
// (pgconn masks only part of an escaped password), lose every part of the
// password too.
func TestRedactIn_LibraryErrors(t *testing.T) {
	t.Setenv("PGPASSWORD", "")
	t.Setenv("PGPASSFILE", "/nonexistent")
	for _, tc := range redactCases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.password == "" {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// Nothing listens on port 1: the connection fails, after
			// parsing, with a message that names the server.
			conn := strings.NewReplacer(":6379", ":1", ":6380", ":1", ":6432", ":1", ":5432", ":1", ":5433", ":1",
				"host=db", "host=127.0.0.1 port=1", "host=x", "host=127.0.0.1 port=1", "@db/", "@127.0.0.1:1/", "cache:", "127.0.0.1:").Replace(tc.conn)
			requireHidden(t, Redact(conn), tc.password, "Redact")
			var err error
			if strings.HasPrefix(conn, "redis") {
				_, err = (&Settings{RedisURL: conn}).OpenRedis(ctx)
			} else {
				_, err = (&Settings{DatabaseURL: conn}).OpenPool(ctx)
			}
			require.Error(t, err)
			requireHidden(t, err.Error(), tc.password, "error")
			// And a message that quotes the password in every form.
			raw := "a " + tc.password + " b " + strings.ReplaceAll(tc.password, " ", `\ `) + " c " + tc.conn
			requireHidden(t, redactIn(raw, tc.conn), tc.password, "redactIn")
		})
	}
}
