package batches

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// ManualDir is the folder under a backfill directory that holds manual backfills.
const ManualDir = "manual"

var (
	fileNamePattern = regexp.MustCompile(`^([0-9]+)_([a-z0-9][a-z0-9_]*)\.sql$`)
	headerPattern   = regexp.MustCompile(`^--\s*([A-Za-z][A-Za-z0-9_-]*)\s*:\s*(.*?)\s*$`)
	downPattern     = regexp.MustCompile(`^--\s*down\s*$`)
)

// FileError is a problem in a backfill file, with the place it was found.
type FileError struct {
	Path string
	Line int // 0 when the problem is the file as a whole
	Err  error
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Path, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// LoadDir reads every backfill file of dir: DIR/<version>_<name>.sql are
// automatic, DIR/manual/<version>_<name>.sql manual. A missing dir holds no
// backfills. Other .sql files (whatever the case of ".sql"), files that are
// not plain files, and any invalid file are errors naming the file and line.
// Folders, and files not ending in .sql, are not read.
func LoadDir(dir string) ([]*Definition, error) {
	var defs []*Definition
	for _, sub := range []struct {
		path string
		mode Mode
	}{{dir, ModeAuto}, {filepath.Join(dir, ManualDir), ModeManual}} {
		entries, err := os.ReadDir(sub.path)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("batches: reading backfill directory: %w", err)
		}
		for _, e := range entries {
			if !strings.EqualFold(filepath.Ext(e.Name()), ".sql") {
				continue
			}
			path := filepath.Join(sub.path, e.Name())
			// A folder (or a link to one) is no file, whatever its name.
			if info, err := os.Stat(path); err == nil && info.IsDir() {
				continue
			}
			def, err := ParseFile(path, sub.mode)
			if err != nil {
				return nil, err
			}
			defs = append(defs, def)
		}
	}
	sort.Slice(defs, func(i, j int) bool { return defs[i].Version < defs[j].Version })
	return defs, nil
}

// ParseFile reads one backfill file.
func ParseFile(path string, mode Mode) (*Definition, error) {
	m := fileNamePattern.FindStringSubmatch(filepath.Base(path))
	if m == nil {
		return nil, &FileError{Path: path, Err: errors.New(`file name must be <version>_<name>.sql, such as 20260301120000_fill_prices.sql: a positive integer version, a lower-case name of letters, digits and underscores, and ".sql" in lower case`)}
	}
	version, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || version < 1 {
		return nil, &FileError{Path: path, Err: fmt.Errorf("version %q must be a positive 64-bit integer", m[1])}
	}
	content, err := readPlainFile(path)
	if err != nil {
		return nil, err
	}
	def, err := ParseSQL(string(content))
	if err != nil {
		if fe, ok := err.(*FileError); ok {
			fe.Path = path
		}
		return nil, err
	}
	def.Version, def.Name, def.Mode, def.Source = version, m[2], mode, path
	def.Checksum = checksumOf(mode, string(content))
	return def, nil
}

// readPlainFile reads path, which must be a regular file or a link to one:
// opening a named pipe would block until something writes to it.
func readPlainFile(path string) ([]byte, error) {
	fail := func(err error) error {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is named already
		}
		return &FileError{Path: path, Err: err}
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fail(err)
	}
	if !info.Mode().IsRegular() {
		return nil, fail(fmt.Errorf("not a regular file but %s; a backfill must be a plain file", kindOf(info.Mode())))
	}
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, fail(err)
	}
	return content, nil
}

func kindOf(mode fs.FileMode) string {
	switch {
	case mode.IsDir():
		return "a directory"
	case mode&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	case mode&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

// maxLineBytes is the longest line a backfill file may have, its line end
// included. Longer lines are mistakes (a data dump pasted in), not SQL.
const maxLineBytes = 1 << 20

// ParseSQL parses a backfill file's content: header comments, the statement,
// and optionally "-- down" and the revert statement. Errors are *FileError
// without a path.
func ParseSQL(content string) (*Definition, error) {
	var (
		opts             Options
		up, down         strings.Builder
		upLine, downLine int
		downMarkerLine   int
		seen             = map[string]int{}
		inHeader         = true
		inDown           bool
	)
	fail := func(line int, format string, args ...any) error {
		return &FileError{Line: line, Err: fmt.Errorf(format, args...)}
	}
	scanner := bufio.NewScanner(strings.NewReader(content))
	scanner.Buffer(make([]byte, 64*1024), maxLineBytes)
	n := 0 // the line being read
	for scanner.Scan() {
		n++
		line := scanner.Text()
		if !utf8.ValidString(line) {
			return nil, fail(n, "the line is not valid UTF-8")
		}
		if strings.IndexByte(line, 0) >= 0 {
			return nil, fail(n, "the line contains a NUL byte, which PostgreSQL does not accept in SQL text")
		}
		trimmed := strings.TrimSpace(line)
		if downPattern.MatchString(trimmed) {
			if inDown {
				return nil, fail(n, "a second \"-- down\" line; a file has one up and one down statement")
			}
			inHeader, inDown, downMarkerLine = false, true, n
			continue
		}
		if inHeader {
			if trimmed == "" {
				continue
			}
			if hm := headerPattern.FindStringSubmatch(trimmed); hm != nil {
				key, value := strings.ToLower(hm[1]), hm[2]
				if first, dup := seen[key]; dup {
					return nil, fail(n, "header key %q given twice (first on line %d)", key, first)
				}
				seen[key] = n
				if err := setOption(&opts, key, value); err != nil {
					return nil, fail(n, "%v", err)
				}
				continue
			}
			if strings.HasPrefix(trimmed, "--") {
				continue // a free comment
			}
			inHeader = false
		}
		target, start := &up, &upLine
		if inDown {
			target, start = &down, &downLine
		}
		if *start == 0 && trimmed != "" && !strings.HasPrefix(trimmed, "--") {
			*start = n
		}
		target.WriteString(line)
		target.WriteByte('\n')
	}
	if err := scanner.Err(); errors.Is(err, bufio.ErrTooLong) {
		return nil, fail(n+1, "the line is longer than 1 MiB (%d bytes), the most a line may have", maxLineBytes)
	} else if err != nil {
		return nil, fail(n+1, "%v", err)
	}
	if _, ok := seen["table"]; !ok {
		return nil, fail(1, "header \"-- table: NAME\" is missing")
	}
	if _, ok := seen["key"]; !ok {
		return nil, fail(1, "header \"-- key: COLUMN\" is missing")
	}
	opts = opts.WithDefaults()
	if err := opts.validate(); err != nil {
		return nil, fail(1, "%v", err)
	}
	upSQL, err := checkStatement(up.String(), upLine, "statement")
	if err != nil {
		return nil, err
	}
	def := &Definition{Options: opts, UpSQL: upSQL, Up: sqlStep(upSQL)}
	if inDown {
		if downLine == 0 {
			return nil, fail(downMarkerLine, "down statement is missing after \"-- down\"")
		}
		downSQL, err := checkStatement(down.String(), downLine, "down statement")
		if err != nil {
			return nil, err
		}
		def.DownSQL, def.Down = downSQL, sqlStep(downSQL)
	}
	return def, nil
}

func setOption(o *Options, key, value string) error {
	positive := func(most int) (int, error) {
		n, err := strconv.Atoi(value)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("%s: want a positive whole number, got %q", key, value)
		}
		if n > most {
			return 0, fmt.Errorf("%s: must be at most %d, got %d", key, most, n)
		}
		return n, nil
	}
	duration := func(least, most time.Duration) (time.Duration, error) {
		d, err := time.ParseDuration(value)
		if err != nil || !within(d, least, most) {
			return 0, fmt.Errorf("%s: want a duration between %s and %s (such as 500ms, 2s or 1m), got %q", key, least, most, value)
		}
		return d, nil
	}
	var err error
	switch key {
	case "table":
		o.Table, err = identifierValue(key, value, 2)
	case "key":
		o.Key, err = identifierValue(key, value, 1)
	case "on_loss":
		o.OnLoss, err = value, checkOnLoss(value)
	case "where", "down_where", "verify", "lossy":
		if err = checkCondition(value); err != nil {
			err = fmt.Errorf("%s: %w", key, err)
		}
		switch key {
		case "where":
			o.Where = value
		case "down_where":
			o.DownWhere = value
		case "verify":
			o.Verify = value
		default:
			o.Lossy = value
		}
	case "batch":
		o.BatchSize, err = positive(BatchSizeMax) // bounds as Options.validate
	case "duty_cycle":
		if o.DutyCycle, err = ParseDutyCycle(value); err != nil {
			err = fmt.Errorf("duty_cycle: %w", err)
		}
	case "batch_time":
		if value == "off" {
			o.BatchTime = BatchTimeOff
		} else {
			o.BatchTime, err = duration(BatchTimeMin, BatchTimeMax)
		}
	case "batch_min":
		o.BatchMin, err = positive(BatchSizeMax)
	case "batch_max":
		o.BatchMax, err = positive(BatchSizeMax)
	case "max_replica_lag":
		o.MaxReplicaLag, err = limitValue(key, value, duration)
	case "max_transaction_age":
		o.MaxTransactionAge, err = limitValue(key, value, duration)
	case "max_active_backends":
		if value == "off" {
			o.MaxActiveBackends = -1
		} else {
			o.MaxActiveBackends, err = positive(100_000)
		}
	case "throttle_query":
		o.ThrottleQuery = value
		if err = CheckThrottleQuery(value); err != nil {
			err = fmt.Errorf("throttle_query: %w", err)
		}
	case "hold_during_vacuum":
		o.HoldDuringVacuum, err = strconv.ParseBool(value)
		if err != nil {
			err = fmt.Errorf("hold_during_vacuum: want true or false, got %q", value)
		}
	case "partitions":
		o.Partitions, err = positive(PartitionsMax)
	case "attempts":
		o.MaxAttempts, err = positive(MaxAttemptsMax)
	case "rate":
		o.Rate, err = strconv.ParseFloat(value, 64)
		if err != nil || !validRate(o.Rate) {
			err = fmt.Errorf("rate: want 0 (unlimited) or rows per second between %d and %.0f, got %q", RateMin, RateMax, value)
		}
	case "lock_timeout":
		// 0 is refused here: to PostgreSQL it means no limit at all, while
		// leaving the key out means the worker's default.
		o.LockTimeout, err = duration(LockTimeoutMin, LockTimeoutMax)
	case "statement_timeout":
		o.StatementTimeout, err = duration(StatementTimeoutMin, StatementTimeoutMax)
	default:
		err = fmt.Errorf("unknown header key %q (known: table, key, where, down_where, verify, lossy, on_loss, batch, batch_time, batch_min, batch_max, rate, duty_cycle, partitions, attempts, lock_timeout, statement_timeout, max_replica_lag, max_active_backends, max_transaction_age, throttle_query, hold_during_vacuum)", key)
	}
	return err
}

// limitValue reads a health limit: a duration, or "off".
func limitValue(key, value string, duration func(least, most time.Duration) (time.Duration, error)) (time.Duration, error) {
	if value == "off" {
		return -1, nil
	}
	d, err := duration(HealthLimitMin, HealthLimitMax)
	if err != nil {
		return 0, fmt.Errorf("%w, or off", err)
	}
	return d, nil
}

var identifierPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*$`)

// identifierValue accepts a plain identifier, or schema.name when parts is 2.
// Names are quoted when used, so only plain ones are allowed here to keep the
// header unambiguous.
func identifierValue(key, value string, parts int) (string, error) {
	names := strings.Split(value, ".")
	if len(names) > parts {
		return "", fmt.Errorf("%s: %q has too many dots", key, value)
	}
	for _, n := range names {
		if !identifierPattern.MatchString(n) {
			return "", fmt.Errorf("%s: %q is not a valid name (letters, digits, _ and $; not starting with a digit)", key, value)
		}
	}
	return value, nil
}

// checkStatement trims a statement and makes sure it is one statement that
// uses exactly the parameters @first and @last.
func checkStatement(sql string, line int, what string) (string, error) {
	if line == 0 {
		return "", &FileError{Line: 1, Err: fmt.Errorf("%s is missing", what)}
	}
	sql = strings.TrimSpace(sql)
	params, statements := scanSQL(sql)
	if statements > 1 {
		return "", &FileError{Line: line, Err: fmt.Errorf("%s: only one statement is allowed (it runs once per batch)", what)}
	}
	for _, p := range params {
		if p != "first" && p != "last" {
			return "", &FileError{Line: line, Err: fmt.Errorf("%s uses @%s; only @first and @last are bound", what, p)}
		}
	}
	for _, want := range []string{"first", "last"} {
		if !contains(params, want) {
			return "", &FileError{Line: line, Err: fmt.Errorf("%s must use both @first and @last (the batch's first and last key); @%s is missing", what, want)}
		}
	}
	return sql, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// sqlStep runs a statement with the batch's bounds bound to @first and @last.
func sqlStep(sql string) BatchFunc {
	return func(ctx context.Context, tx pgx.Tx, b Batch) (int64, error) {
		tag, err := tx.Exec(ctx, sql, pgx.NamedArgs{"first": b.First, "last": b.Last})
		if err != nil {
			return 0, err
		}
		return tag.RowsAffected(), nil
	}
}
