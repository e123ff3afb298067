package web

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// The shipped Grafana dashboard and Prometheus alert rules, in deploy/.
var (
	dashboardFile  = filepath.Join("..", "..", "deploy", "grafana", "backfill-dashboard.json")
	alertsFile     = filepath.Join("..", "..", "deploy", "prometheus", "backfill-alerts.yml")
	alertsTestFile = filepath.Join("..", "..", "deploy", "prometheus", "backfill-alerts.test.yml")
)

// promtoolPath finds Debian's promtool (package prometheus).
func promtoolPath(t *testing.T) string { return debianTool(t, "promtool", "prometheus") }

// The alert rules are valid, and their unit tests (each alert fires on one
// input and stays silent on another) pass.
func TestDeploy_AlertRulesPassPromtool(t *testing.T) {
	t.Parallel()
	promtool := promtoolPath(t)
	for _, args := range [][]string{
		{"check", "rules", alertsFile},
		{"test", "rules", alertsTestFile},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
		require.Contains(t, string(out), "SUCCESS", "promtool %s:\n%s", strings.Join(args, " "), out)
	}
}

// Every metric the dashboard and the alerts use is one /metrics really
// serves, with the labels their selectors match on and the states the
// version table has: a metric or label renamed in the code, or misspelt in
// deploy/, fails here. The metrics come from a real worker working a real
// run: rate-limited (an ETA, rate-limit waits), with a health limit (the
// signals' gauges) and a row whose update fails (failed batches).
func TestDeploy_DashboardAndAlertsUseMetricsThatExist(t *testing.T) {
	t.Parallel()
	used := usedSelectors(t)
	require.NotEmpty(t, used.metrics)

	f := newFixture(t, 3000, "-- rate: 100\n-- batch: 10\n-- partitions: 2\n-- duty_cycle: off\n-- max_active_backends: 1000\n")
	testdb.Exec(t, f.pool, `ALTER TABLE items ADD CONSTRAINT no_touching_5 CHECK (id <> 5 OR n = 0)`)
	m := NewMetrics()
	h := f.handler(t, "", m)
	f.startWorker(t, m)
	// What any scrape served: the ETA, say, is gone once the run ended.
	exposed := exposition{}
	var missing []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := call(t, h, http.MethodGet, "/metrics", "")
		require.Equal(t, http.StatusOK, r.code)
		exposed.add(t, r.body)
		missing = missing[:0]
		for name := range used.metrics {
			if _, ok := exposed[name]; !ok {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	sort.Strings(missing)
	require.Empty(t, missing, "metrics the dashboard or the alerts use that /metrics never served (where: %v)", used.where(missing))

	// The labels selectors match on are the metrics' own (or the scrape's).
	for _, s := range used.selectors {
		for label, values := range s.matchers {
			if label == "instance" || label == "job" {
				continue
			}
			require.Contains(t, exposed[s.metric], label, "%s matches %s on label %q, which /metrics does not serve", s.where, s.metric, label)
			if s.metric == "backfill_run_state" && label == "state" {
				for _, v := range values {
					require.Contains(t, allStates, batches.State(v), "%s: %q is no state of a run", s.where, v)
				}
			}
		}
	}
	// The labels aggregations group by.
	labels := map[string]bool{"instance": true, "job": true, "le": true}
	for name, ls := range exposed {
		if strings.HasPrefix(name, "backfill_") {
			for l := range ls {
				labels[l] = true
			}
		}
	}
	for l, where := range used.grouping {
		require.True(t, labels[l], "%s groups by %q, a label no backfill metric has", where, l)
	}
	t.Logf("%d metrics, %d selectors, %d grouping labels checked: %v", len(used.metrics), len(used.selectors), len(used.grouping), slices.Sorted(maps.Keys(used.metrics)))
}

var allStates = []batches.State{batches.StatePending, batches.StateRunning, batches.StatePaused,
	batches.StateFailed, batches.StateCompleted, batches.StateCancelled}

// exposition is each served metric name (histograms' _bucket, _sum and
// _count apart) with the label names its samples carry.
type exposition map[string]map[string]bool

// add adds what a scrape's body served.
func (e exposition) add(t *testing.T, body string) {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		require.Positive(t, end, "exposition line %q", line)
		name := line[:end]
		if e[name] == nil {
			e[name] = map[string]bool{}
		}
		if line[end] == '{' {
			sel, _, err := lexMatchers(line, end)
			require.NoError(t, err, "exposition line %q", line)
			for l := range sel {
				e[name][l] = true
			}
		}
	}
}

// selector is a metric a PromQL expression selects, with the values each
// label matcher names (a regex's alternatives).
type selector struct {
	metric   string
	matchers map[string][]string
	where    string
}

// used is what the dashboard and the alerts select.
type used struct {
	metrics   map[string][]string // metric: where
	selectors []selector
	grouping  map[string]string // label: where
}

func (u used) where(names []string) map[string][]string {
	w := map[string][]string{}
	for _, n := range names {
		w[n] = u.metrics[n]
	}
	return w
}

// usedSelectors reads every expression of the dashboard (panel targets,
// variables) and of the alert rules (expressions, and the queries their
// annotations run).
func usedSelectors(t *testing.T) used {
	t.Helper()
	u := used{metrics: map[string][]string{}, grouping: map[string]string{}}
	add := func(where, expr string) {
		sels, grouping, err := promqlSelectors(expr)
		require.NoError(t, err, "%s: %s", where, expr)
		require.NotEmpty(t, sels, "%s selects no metric: %s", where, expr)
		for _, s := range sels {
			s.where = where
			u.selectors = append(u.selectors, s)
			if !slices.Contains(u.metrics[s.metric], where) {
				u.metrics[s.metric] = append(u.metrics[s.metric], where)
			}
		}
		for _, l := range grouping {
			u.grouping[l] = where
		}
	}

	// The dashboard.
	raw, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var dash struct {
		Title      string
		Panels     []dashPanel
		Templating struct {
			List []struct {
				Name       string
				Type       string
				Query      json.RawMessage
				Datasource any
			}
		}
	}
	require.NoError(t, json.Unmarshal(raw, &dash), "the dashboard is not JSON")
	require.NotEmpty(t, dash.Title)
	dsVar := false
	for _, v := range dash.Templating.List {
		if v.Type == "datasource" {
			dsVar = true
			continue
		}
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if json.Unmarshal(v.Query, &q) != nil {
			require.NoError(t, json.Unmarshal(v.Query, &q.Query))
		}
		// Grafana's label_values(metric, label) is not PromQL.
		lv := regexp.MustCompile(`^label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)$`).FindStringSubmatch(q.Query)
		require.NotNil(t, lv, "variable %s: want label_values(metric, label), got %q", v.Name, q.Query)
		add("variable "+v.Name, lv[1]+"{"+lv[2]+`=~".+"}`)
	}
	require.True(t, dsVar, "the dashboard has no datasource variable")
	var walk func(ps []dashPanel)
	targets := 0
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
			ds, _ := json.Marshal(p.Datasource)
			require.Contains(t, string(ds), "${DS_PROMETHEUS}", "panel %q: the datasource is the variable", p.Title)
			for _, tg := range p.Targets {
				targets++
				add(fmt.Sprintf("panel %q %s", p.Title, tg.RefID), tg.Expr)
			}
		}
	}
	walk(dash.Panels)
	require.Positive(t, targets)

	// The alerts.
	raw, err = os.ReadFile(alertsFile)
	require.NoError(t, err)
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Record, Expr string
				Annotations         map[string]string
			}
		}
	}
	require.NoError(t, yaml.Unmarshal(raw, &rules))
	alerts := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts++
			add("alert "+r.Alert+r.Record, r.Expr)
			for k, text := range r.Annotations {
				for _, q := range annotationQuery.FindAllStringSubmatch(text, -1) {
					// %q of a label value stands for a string.
					add("alert "+r.Alert+" "+k, strings.ReplaceAll(q[1], "%q", `"x"`))
				}
			}
		}
	}
	require.Positive(t, alerts)
	return u
}

// annotationQuery is a query an alert's template runs: the string piped
// (maybe through printf) into query.
var annotationQuery = regexp.MustCompile(`(?:printf )?"([^"]*)"[^|}]*\|\s*query`)

type dashPanel struct {
	Title      string
	Type       string
	Datasource any
	Targets    []struct {
		RefID string `json:"refId"`
		Expr  string
	}
	Panels []dashPanel
}

// PromQL words that are not metric names.
var (
	promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"inf": true, "nan": true, "atan2": true}
	promqlAggregations = map[string]bool{"sum": true, "min": true, "max": true, "avg": true, "group": true,
		"stddev": true, "stdvar": true, "count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true}
	promqlGrouping = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true,
		"group_left": true, "group_right": true}
)

// promqlSelectors lexes a PromQL expression (with Grafana's $variables)
// just enough to find its vector selectors and the labels its by, without,
// on and ignoring clauses name.
func promqlSelectors(expr string) (sels []selector, grouping []string, err error) {
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	skipSpace := func(i int) int {
		for i < len(expr) && strings.IndexByte(" \t\r\n", expr[i]) >= 0 {
			i++
		}
		return i
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case strings.IndexByte(" \t\r\n", c) >= 0:
			i++
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			if i, err = skipString(expr, i); err != nil {
				return nil, nil, err
			}
		case c == '$': // a Grafana variable: $name or ${name}
			i++
			if i < len(expr) && expr[i] == '{' {
				end := strings.IndexByte(expr[i:], '}')
				if end < 0 {
					return nil, nil, fmt.Errorf("unclosed ${ at %d", i)
				}
				i += end + 1
			}
			for i < len(expr) && isIdent(expr[i], false) {
				i++
			}
		case c == '[': // a range or subquery
			end := strings.IndexByte(expr[i:], ']')
			if end < 0 {
				return nil, nil, fmt.Errorf("unclosed [ at %d", i)
			}
			i += end + 1
		case c == '{':
			return nil, nil, fmt.Errorf("a selector without a metric name at %d: %s", i, expr[i:])
		case c >= '0' && c <= '9' || c == '.': // a number or a duration
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.') {
				i++
			}
		case isIdent(c, true):
			start := i
			for i < len(expr) && isIdent(expr[i], false) {
				i++
			}
			word := expr[start:i]
			next := skipSpace(i)
			switch {
			case promqlGrouping[word]:
				if next < len(expr) && expr[next] == '(' {
					end := strings.IndexByte(expr[next:], ')')
					if end < 0 {
						return nil, nil, fmt.Errorf("unclosed ( after %s", word)
					}
					for _, l := range strings.Split(expr[next+1:next+end], ",") {
						if l = strings.TrimSpace(l); l != "" {
							grouping = append(grouping, l)
						}
					}
					i = next + end + 1
				}
			case promqlKeywords[strings.ToLower(word)], promqlAggregations[word]:
			case next < len(expr) && expr[next] == '(': // a function
			default:
				s := selector{metric: word, matchers: map[string][]string{}}
				if next < len(expr) && expr[next] == '{' {
					var m map[string][]string
					if m, i, err = lexMatchers(expr, next); err != nil {
						return nil, nil, err
					}
					s.matchers = m
				}
				sels = append(sels, s)
			}
		default:
			i++
		}
	}
	return sels, grouping, nil
}

// skipString returns the index past the string literal at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unclosed string at %d", i)
}

// plainAlternatives is a matcher's value that stands for literal values:
// one word, or a regex of words as alternatives.
var plainAlternatives = regexp.MustCompile(`^[\w ]+(\|[\w ]+)*$`)

// lexMatchers reads the label matchers {a="x", b=~"y|z"} at i and returns
// each label with its values, and the index past them.
func lexMatchers(s string, i int) (map[string][]string, int, error) {
	m := map[string][]string{}
	i++ // {
	for {
		for i < len(s) && strings.IndexByte(" \t\r\n,", s[i]) >= 0 {
			i++
		}
		if i >= len(s) {
			return nil, 0, fmt.Errorf("unclosed {")
		}
		if s[i] == '}' {
			return m, i + 1, nil
		}
		start := i
		for i < len(s) && strings.IndexByte("=!~ \t", s[i]) < 0 {
			i++
		}
		label := s[start:i]
		for i < len(s) && strings.IndexByte("=!~ \t", s[i]) >= 0 {
			i++
		}
		if i >= len(s) || strings.IndexByte("\"'`", s[i]) < 0 {
			return nil, 0, fmt.Errorf("label %q: no quoted value at %d", label, i)
		}
		end, err := skipString(s, i)
		if err != nil {
			return nil, 0, err
		}
		value := s[i+1 : end-1]
		m[label] = nil
		if plainAlternatives.MatchString(value) {
			m[label] = strings.Split(value, "|")
		}
		i = end
	}
}

// The lexer finds the selectors of the expressions deploy/ uses.
func TestDeploy_PromQLSelectors(t *testing.T) {
	t.Parallel()
	for expr, want := range map[string][]string{
		`histogram_quantile(0.99, sum by (le, version) (rate(backfill_batch_duration_seconds_bucket{name=~"$name"}[$__rate_interval])))`:              {"backfill_batch_duration_seconds_bucket"},
		`(max(backfill_workers_alive) == 0) and on () count(max by (version) (last_over_time(backfill_run_state{state=~"pending|running"}[1h]))) > 0`: {"backfill_workers_alive", "backfill_run_state"},
		`absent(backfill_run_gauges_up) unless on(version) x offset 5m`:                                                                               {"backfill_run_gauges_up", "x"},
		`sum without (instance) (a{reason!~"((rate limit|duty cycle) \\([^;]*\\)(; )?)+", b='c'} > 1e3)`:                                              {"a"},
	} {
		sels, _, err := promqlSelectors(expr)
		require.NoError(t, err, expr)
		var got []string
		for _, s := range sels {
			got = append(got, s.metric)
		}
		require.Equal(t, want, got, expr)
	}
	sels, grouping, err := promqlSelectors(`max by (version, name) (backfill_run_state{state=~"pending|running", name="a"}) and on (run) b`)
	require.NoError(t, err)
	require.Equal(t, map[string][]string{"state": {"pending", "running"}, "name": {"a"}}, sels[0].matchers)
	require.Equal(t, []string{"version", "name", "run"}, grouping)
	_, _, err = promqlSelectors(`{__name__="x"}`)
	require.Error(t, err)
}
