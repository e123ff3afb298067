// Package logsummary keeps a fault that repeats from flooding the log: a
// slog.Handler wrapper that writes the first of a series of like warnings or
// errors at once and then, instead of one line per attempt, one summary per
// window with the number of records it held back.
//
// Records at warn level and above are grouped by a key made of:
//
//   - the level, the message and the call site (file and line of the record's
//     PC);
//   - where the record comes from: the groups and attributes added with
//     WithGroup and WithAttrs (logger.With("partition", 3), for example), as
//     they are;
//   - the value of the record's "error" or "err" attribute, normalised (see
//     Normalize): every run of hexadecimal digits that holds a decimal digit
//     or is at least 8 long, every 0x literal and every other run of decimal
//     digits becomes "#", so
//     "dial tcp 127.0.0.1:5432: connect: connection refused" matches its
//     repeats whatever the addresses, ports, pids or ids in it.
//
// The record's other attributes (attempt, sleep_duration, job_id ...) count
// as volatile: they do not split a group. They are written with the first
// record and, from the last record held back, with the summary.
//
// The first record of a group is written at once and opens a window (30s
// unless Options.Window says otherwise). Further records of the group within
// the window are counted, not written. When the window ends, one record is
// written if any were held back, dated at the window's end: the message and
// attributes of the last one, at its level and from the handler (WithAttrs,
// WithGroup) it came to, plus repeated=N and over=30s; a new window starts
// without writing anything. A window that ends with nothing held back closes
// the group, so the next record of it is written at once again. Windows end
// on the group's next record and from a background sweep (every second, or
// every Window when shorter), so a fault that stops is summarised too. The
// sweeping goroutine runs only while there are groups.
//
// Debug and info records pass through untouched, as do all records once the
// handler is closed. At most Options.MaxGroups groups (1000) are kept; the
// least recently seen one is summarised and forgotten to make room.
//
// Close the handler (or the logger, with CloseLogger) at shutdown to write
// the summaries still pending.
package logsummary

import (
	"container/list"
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults for Options.
const (
	WindowDefault    = 30 * time.Second
	MaxGroupsDefault = 1000
)

// Level is the lowest level that is de-duplicated; records below it pass
// through untouched.
const Level = slog.LevelWarn

// Options configure a Handler. The zero value gives the defaults.
type Options struct {
	// Window is how long repeats of a record are counted before a summary
	// is written. Default WindowDefault.
	Window time.Duration
	// MaxGroups caps the groups remembered. Default MaxGroupsDefault.
	MaxGroups int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Tick, when set, replaces the background ticker: every value received
	// makes the handler summarise the windows that ended by Now(). Tests
	// pass a channel of their own together with a fake Now.
	Tick <-chan time.Time
}

// Handler is the summarising slog.Handler. Handlers derived with WithAttrs
// and WithGroup share the groups, the counters and the background sweep of
// the one made by New. It is safe for concurrent use.
type Handler struct {
	inner slog.Handler
	st    *state
	// prefix is the part of the key that says where records come from: the
	// groups and attributes added with WithGroup and WithAttrs.
	prefix string
	// groups is the group path records' attributes are under, "a.b." or "".
	groups string
}

// New wraps inner.
func New(inner slog.Handler, opts Options) *Handler {
	if opts.Window <= 0 {
		opts.Window = WindowDefault
	}
	if opts.MaxGroups <= 0 {
		opts.MaxGroups = MaxGroupsDefault
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	st := &state{
		opts:   opts,
		groups: make(map[string]*list.Element),
		order:  list.New(),
		done:   make(chan struct{}),
	}
	return &Handler{inner: inner, st: st}
}

// state is what a Handler and the ones derived from it share.
type state struct {
	opts Options
	// afterSweep, when set (by tests), runs after each background sweep.
	afterSweep func()

	mu      sync.Mutex
	groups  map[string]*list.Element // of *group
	order   *list.List               // of *group, least recently seen first
	running bool                     // the sweeping goroutine runs
	closed  bool
	done    chan struct{} // closed by Close: stops the sweep
	wg      sync.WaitGroup
}

// group is a series of like records.
type group struct {
	key        string
	start, end time.Time // the current window
	count      int       // records held back in the window
	last       slog.Record
	inner      slog.Handler // where last goes: the inner handler it came to
}

// summary is a record to write once the lock is released.
type summary struct {
	inner slog.Handler
	rec   slog.Record
}

func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range attrs {
		writeAttr(&b, h.groups, a)
	}
	return &Handler{inner: h.inner.WithAttrs(attrs), st: h.st, prefix: b.String(), groups: h.groups}
}

func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &Handler{
		inner:  h.inner.WithGroup(name),
		st:     h.st,
		prefix: h.prefix + "[" + h.groups + name + "]",
		groups: h.groups + name + ".",
	}
}

// writeAttr adds an attribute of WithAttrs to a key: its path and value,
// the value normalised for "error" and "err".
func writeAttr(b *strings.Builder, path string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		if a.Key != "" {
			path += a.Key + "."
		}
		for _, ga := range v.Group() {
			writeAttr(b, path, ga)
		}
		return
	}
	if a.Key == "" {
		return
	}
	s := v.String()
	if isErrorKey(a.Key) {
		s = Normalize(s)
	}
	b.WriteString(path)
	b.WriteString(a.Key)
	b.WriteByte('=')
	b.WriteString(s)
	b.WriteByte('\x00')
}

func isErrorKey(k string) bool { return k == "error" || k == "err" }

// key is the group a record belongs to.
func (h *Handler) key(r slog.Record) string {
	var b strings.Builder
	b.WriteString(r.Level.String())
	b.WriteByte('\x00')
	b.WriteString(callSite(r.PC))
	b.WriteByte('\x00')
	b.WriteString(h.prefix)
	b.WriteByte('\x00')
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		if isErrorKey(a.Key) {
			b.WriteByte('\x00')
			b.WriteString(a.Key)
			b.WriteByte('=')
			b.WriteString(Normalize(a.Value.Resolve().String()))
		}
		return true
	})
	return b.String()
}

// callSites caches callSite's answers: program counters to "file:line".
// There are as many as there are logging calls in the program.
var callSites sync.Map

// callSite returns the file and line a record was logged from. The PC alone
// would not do: a function inlined at two places logs from two PCs.
func callSite(pc uintptr) string {
	if pc == 0 {
		return ""
	}
	if s, ok := callSites.Load(pc); ok {
		return s.(string)
	}
	f, _ := runtime.CallersFrames([]uintptr{pc}).Next()
	s := f.File + ":" + strconv.Itoa(f.Line)
	callSites.Store(pc, s)
	return s
}

// Handle writes r, or counts it when it repeats a record written less than
// a window ago.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < Level {
		return h.inner.Handle(ctx, r)
	}
	key := h.key(r)
	st := h.st
	now := st.opts.Now()
	var out []summary

	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return h.inner.Handle(ctx, r)
	}
	var g *group
	if e := st.groups[key]; e != nil {
		g = e.Value.(*group)
		s, gone := st.expire(g, now)
		out = appendSummary(out, s)
		if gone {
			st.remove(e)
			g = nil
		} else {
			st.order.MoveToBack(e)
		}
	}
	pass := g == nil
	if pass {
		for len(st.groups) >= st.opts.MaxGroups {
			e := st.order.Front()
			out = appendSummary(out, st.cut(e.Value.(*group), now))
			st.remove(e)
		}
		g = &group{key: key, start: now, end: now.Add(st.opts.Window), inner: h.inner}
		st.groups[key] = st.order.PushBack(g)
		st.startSweep()
	} else {
		g.count++
		g.last = r.Clone()
		g.inner = h.inner
	}
	st.mu.Unlock()

	write(out)
	if pass {
		return h.inner.Handle(ctx, r)
	}
	return nil
}

func appendSummary(out []summary, s *summary) []summary {
	if s != nil {
		out = append(out, *s)
	}
	return out
}

// write writes summaries; there is nobody to tell about their errors.
func write(out []summary) {
	for _, s := range out {
		_ = s.inner.Handle(context.Background(), s.rec)
	}
}

// expire ends g's window when it is over at now: it returns the summary of
// the window if records were held back, and whether the group is gone
// (nothing held back in a window that ended). mu is held.
func (st *state) expire(g *group, now time.Time) (*summary, bool) {
	if now.Before(g.end) {
		return nil, false
	}
	if g.count == 0 {
		return nil, true
	}
	s := st.cut(g, g.end)
	g.start, g.end = g.end, g.end.Add(st.opts.Window)
	// Nothing came in the window that followed when it is over too.
	return s, !now.Before(g.end)
}

// cut returns the summary of the records g held back until at, if any, and
// resets its count. mu is held.
func (st *state) cut(g *group, at time.Time) *summary {
	if g.count == 0 {
		return nil
	}
	over := at.Sub(g.start)
	if over >= time.Second {
		over = over.Round(time.Second)
	}
	r := slog.NewRecord(at, g.last.Level, g.last.Message, g.last.PC)
	g.last.Attrs(func(a slog.Attr) bool {
		r.AddAttrs(a)
		return true
	})
	r.AddAttrs(slog.Int("repeated", g.count), slog.Duration("over", over))
	s := &summary{inner: g.inner, rec: r}
	g.count, g.last = 0, slog.Record{}
	return s
}

func (st *state) remove(e *list.Element) {
	delete(st.groups, e.Value.(*group).key)
	st.order.Remove(e)
}

// startSweep starts the background sweep unless it runs. mu is held.
func (st *state) startSweep() {
	if st.running {
		return
	}
	st.running = true
	st.wg.Add(1)
	go st.sweepLoop()
}

// sweepLoop ends the windows that are over until no group is left or the
// handler is closed.
func (st *state) sweepLoop() {
	defer st.wg.Done()
	tick := st.opts.Tick
	if tick == nil {
		t := time.NewTicker(min(time.Second, st.opts.Window))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-st.done:
			return
		case <-tick:
		}
		more := st.sweep(st.opts.Now())
		if st.afterSweep != nil {
			st.afterSweep()
		}
		if !more {
			return
		}
	}
}

// sweep ends the windows that are over at now and writes their summaries.
// It reports whether the sweep should go on; when not, it has stopped.
func (st *state) sweep(now time.Time) bool {
	var out []summary
	st.mu.Lock()
	for e := st.order.Front(); e != nil; {
		next := e.Next()
		s, gone := st.expire(e.Value.(*group), now)
		out = appendSummary(out, s)
		if gone {
			st.remove(e)
		}
		e = next
	}
	more := len(st.groups) > 0 && !st.closed
	if !more {
		st.running = false
	}
	st.mu.Unlock()
	write(out)
	return more
}

// Flush writes the summaries of the records held back so far, without
// waiting for their windows to end.
func (h *Handler) Flush() {
	st := h.st
	now := st.opts.Now()
	var out []summary
	st.mu.Lock()
	for e := st.order.Front(); e != nil; e = e.Next() {
		out = appendSummary(out, st.cut(e.Value.(*group), now))
	}
	st.mu.Unlock()
	write(out)
}

// Close stops the background sweep and writes the summaries still pending.
// Records that come later pass through untouched. Closing any handler
// derived from the same New closes them all; closing twice does nothing.
func (h *Handler) Close() error {
	st := h.st
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return nil
	}
	st.closed = true
	close(st.done)
	st.mu.Unlock()
	st.wg.Wait()
	h.Flush()
	st.mu.Lock()
	clear(st.groups)
	st.order.Init()
	st.mu.Unlock()
	return nil
}

// CloseLogger closes the Handler behind l, if l's handler is one, writing
// the summaries still pending. Call it once at shutdown, after the last
// warning that may repeat.
func CloseLogger(l *slog.Logger) error {
	if h, ok := l.Handler().(*Handler); ok {
		return h.Close()
	}
	return nil
}

// Normalize replaces the variable parts of an error message with "#": each
// run of letters and digits that is hexadecimal and holds a decimal digit or
// is at least 8 long, and each run of decimal digits in other words. So
// "127.0.0.1:5432" becomes "#.#.#.#:#", "pid 4711" "pid #", "conn_4a7f"
// "conn_#", "0x1f" "#", "550e8400-e29b-41d4-a716-446655440000" "#-#-#-#-#"
// and "v5" "v#"; "connection refused" and "deadline" stay as they are.
func Normalize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if !isAlnum(s[i]) {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i
		hex, digit := true, false
		for j < len(s) && isAlnum(s[j]) {
			c := s[j]
			if c >= '0' && c <= '9' {
				digit = true
			} else if !(c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				hex = false
			}
			j++
		}
		word := s[i:j]
		switch {
		case hex && (digit || len(word) >= 8), isHexLiteral(word):
			b.WriteByte('#')
		case digit:
			for k := 0; k < len(word); {
				if word[k] >= '0' && word[k] <= '9' {
					for k < len(word) && word[k] >= '0' && word[k] <= '9' {
						k++
					}
					b.WriteByte('#')
					continue
				}
				b.WriteByte(word[k])
				k++
			}
		default:
			b.WriteString(word)
		}
		i = j
	}
	return b.String()
}

// isHexLiteral reports whether w is "0x" followed by hexadecimal digits.
func isHexLiteral(w string) bool {
	if len(w) < 3 || w[0] != '0' || w[1] != 'x' && w[1] != 'X' {
		return false
	}
	for i := 2; i < len(w); i++ {
		c := w[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
