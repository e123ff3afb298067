package cli

import (
	"net"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
)

// mask stands for a password in what is printed.
const mask = "xxxxx"

// Redact returns a connection string, PostgreSQL's or Redis's, for messages
// and logs, without its password. A PostgreSQL string that parses is
// rebuilt from its parsed settings (user, hosts, database), so that no
// spelling of a password (escaped, quoted, percent-encoded) can slip
// through. Other URLs lose the password of their user info and query. For
// anything else, everything after a password keyword and everything before
// the last "@" is hidden: more than the password, never less.
func Redact(conn string) string {
	if cfg := parsePostgres(conn); cfg != nil {
		return display(cfg)
	}
	if u, err := url.Parse(conn); err == nil && u.Scheme != "" && u.Host != "" {
		return redactURL(u)
	}
	return redactUnparsed(conn)
}

// parsePostgres parses a PostgreSQL URL or keyword/value string, and
// returns nil for anything else: pgconn would take "redis://h/?a=b" for
// keyword/value settings.
func parsePostgres(conn string) *pgconn.Config {
	if strings.Contains(conn, "://") && !strings.HasPrefix(conn, "postgres://") && !strings.HasPrefix(conn, "postgresql://") {
		return nil
	}
	cfg, err := pgconn.ParseConfig(conn)
	if err != nil {
		return nil
	}
	return cfg
}

// display is a parsed configuration as a URL without its password.
func display(cfg *pgconn.Config) string {
	u := url.URL{Scheme: "postgres", User: url.User(cfg.User), Path: "/" + cfg.Database}
	if cfg.Password != "" {
		u.User = url.UserPassword(cfg.User, mask)
	}
	var hosts []string
	seen := map[string]bool{}
	for _, fb := range append([]*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port}}, cfg.Fallbacks...) {
		// sslmode=prefer tries each host twice, with and without TLS.
		if h := net.JoinHostPort(fb.Host, strconv.Itoa(int(fb.Port))); !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	u.Host = strings.Join(hosts, ",")
	return u.String()
}

func redactURL(u *url.URL) string {
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), mask)
	}
	pairs := strings.Split(u.RawQuery, "&")
	for i, p := range pairs {
		if k, _, ok := strings.Cut(p, "="); ok && isPasswordKey(k) {
			pairs[i] = k + "=" + mask
		}
	}
	u.RawQuery = strings.Join(pairs, "&")
	return u.String()
}

// passwordKeyword finds "password=", "sslpassword =" and the like.
var passwordKeyword = regexp.MustCompile(`(?i)password\s*=\s*`)

func isPasswordKey(k string) bool {
	if u, err := url.QueryUnescape(k); err == nil {
		k = u
	}
	return strings.Contains(strings.ToLower(k), "password")
}

// redactUnparsed hides, in a string that parses neither way, everything
// after the first password keyword, then everything between "://" (or the
// start) and the last "@": the keyword first, since a password may hold "@".
func redactUnparsed(s string) string {
	if loc := passwordKeyword.FindStringIndex(s); loc != nil {
		s = s[:loc[1]] + mask
	}
	if at := strings.LastIndex(s, "@"); at >= 0 {
		start := 0
		if i := strings.Index(s[:at], "://"); i >= 0 {
			start = i + 3
		}
		s = s[:start] + mask + s[at:]
	}
	return s
}

// redactIn removes the password of conn from a message, such as a
// library's error that quotes conn.
func redactIn(msg, conn string) string {
	for _, secret := range secretsOf(conn) {
		msg = strings.ReplaceAll(msg, secret, mask)
	}
	return msg
}

// secretsOf lists what must not appear in a message about conn, longest
// first: its password in every spelling (as parsed; raw, unquoted and
// percent-decoded, found without relying on conn being valid), and the
// pieces of each spelling that partial masking can leave (see runsOf).
func secretsOf(conn string) []string {
	var found []string
	if cfg := parsePostgres(conn); cfg != nil {
		found = append(found, cfg.Password)
		for k, v := range cfg.RuntimeParams { // keys pgconn does not know, such as PASSWORD
			if isPasswordKey(k) {
				found = append(found, v)
			}
		}
	}
	// A URL's user info, cut as net/url (at the last "@") and pgconn (at the
	// first "@" unless a "/" comes first) cut it.
	if i := strings.Index(conn, "://"); i >= 0 {
		rest := conn[i+3:]
		if colon := strings.Index(rest, ":"); colon >= 0 {
			if at := strings.LastIndex(rest, "@"); at > colon {
				found = append(found, rest[colon+1:at])
			}
			if end := strings.IndexAny(rest, "@/"); end > colon && rest[end] == '@' {
				found = append(found, rest[colon+1:end])
			}
		}
	}
	for _, loc := range passwordKeyword.FindAllStringIndex(conn, -1) {
		raw, value := keywordValue(conn[loc[1]:])
		found = append(found, raw, value)
		if v, _, ok := strings.Cut(raw, "&"); ok { // a URL's query parameter
			found = append(found, v)
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range found {
		forms := []string{f}
		if d, err := url.QueryUnescape(f); err == nil {
			forms = append(forms, d)
		}
		if d, err := url.PathUnescape(f); err == nil {
			forms = append(forms, d)
		}
		for _, form := range forms {
			for _, s := range runsOf(form) {
				if s != "" && s != mask && !seen[s] {
					seen[s] = true
					out = append(out, s)
				}
			}
		}
	}
	// Longest first, so that a secret that contains another is hidden whole.
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// keywordValue reads a keyword/value setting's value at the start of s as
// libpq does: 'quoted' or up to the first white space, with backslash
// escapes. It returns the value as written and as meant.
func keywordValue(s string) (raw, value string) {
	var b strings.Builder
	quoted := strings.HasPrefix(s, "'")
	i := 0
	if quoted {
		i = 1
	}
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
			continue
		case quoted && c == '\'':
			return s[:i+1], b.String()
		case !quoted && strings.IndexByte(" \t\n\r\f\v", c) >= 0:
			return s[:i], b.String()
		}
		b.WriteByte(c)
	}
	return s, b.String()
}

// word is a run of letters and digits: libraries that mask part of a
// password cut it at a space, "@", "/" or ":".
var word = regexp.MustCompile(`[\p{L}\p{N}]+`)

// runsOf returns s and every run of its consecutive words, alone or with
// the character before or after it, that is 4 or more bytes long: whatever
// is left of s when a library masks only part of it ("password=xxxxx
// PWtail" for password=S3cret\ PWtail) is among them.
func runsOf(s string) []string {
	out := []string{s}
	words := word.FindAllStringIndex(s, -1)
	if len(words) > 200 {
		return out // not a password; the whole is hidden all the same
	}
	for i := range words {
		for j := i; j < len(words); j++ {
			start, end := words[i][0], words[j][1]
			_, before := utf8.DecodeLastRuneInString(s[:start])
			_, after := utf8.DecodeRuneInString(s[end:])
			for _, run := range []string{s[start:end], s[start-before : end], s[start : end+after], s[start-before : end+after]} {
				if len(run) >= 4 {
					out = append(out, run)
				}
			}
		}
	}
	return out
}
