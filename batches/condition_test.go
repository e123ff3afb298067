package batches

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// conditionCases are where conditions and why they are rejected ("" when
// they are accepted). The engine pastes a condition as "key > $1 AND
// (CONDITION\n)", so it must be one expression that stays inside its
// parentheses.
var conditionCases = []struct {
	cond string
	want string
}{
	{"status = 'enabled'", ""},
	{"(a = ')')", ""},
	{"a = 1 -- comment )", ""},
	{"$$)$$ = x", ""},
	{"$t$ ( $$ ) $t$ = x", ""},
	{`"odd)name" = 1`, ""},
	{`"a""(" = 1`, ""},
	{"a = 'it''s (' AND b = E'\\' ('", ""},
	{"a = 1 /* ) /* nested ) */ ( */", ""},
	{"x IN (SELECT id FROM y WHERE (z))", ""},
	{"EXISTS (SELECT 1 FROM y WHERE y.id = t.id)", ""},
	{"a$b$ = 1 AND (c)", ""}, // a$b$ is a name, not a dollar quote
	{"tags @> '{a}'", ""},

	{"1=1) OR (1=1", "a ')' at character 4 closes a parenthesis the condition did not open"},
	{")(", "a ')' at character 1 closes"},
	{"(a = 1", "1 '(' not closed"},
	{"((a = 1)", "1 '(' not closed"},
	{"(((", "3 '(' not closed"},
	{"a = 1)", "a ')' at character 6"},
	{"a = ')' )", "a ')' at character 9"},
	{"a=1; DROP TABLE x", "';' at character 4"},
	{"a = 1;", "';' at character 6"},
	{"a = 1 /* ) */ ; -- x", "';' at character 15"},
	{"", "the condition is empty"},
	{"   \t ", "the condition is empty"},
	{"-- only a comment", "the condition has nothing but comments"},
	{"/* only */ /* comments */", "the condition has nothing but comments"},
	{"a = 'open", "a string literal or quoted name is not closed"},
	{`"open = 1`, "a string literal or quoted name is not closed"},
	{"a = $$open", "a dollar-quoted string is not closed"},
	{"a = 1 /* open", "a comment is not closed"},
	{"a = 1 /* /* */ open", "a comment is not closed"},
}

func TestCheckCondition(t *testing.T) {
	t.Parallel()
	for _, tc := range conditionCases {
		t.Run(tc.cond, func(t *testing.T) {
			t.Parallel()
			err := checkCondition(tc.cond)
			if tc.want == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tc.want)
			}
		})
	}
}

// The same checks, at parse time, with the header line.
func TestParseSQL_WhereMustBeOneExpression(t *testing.T) {
	t.Parallel()
	for _, tc := range conditionCases {
		if tc.cond == "" || tc.cond == "   \t " {
			continue // a header value is trimmed: covered by WhereEmpty
		}
		for _, key := range []string{"where", "down_where"} {
			t.Run(key+" "+tc.cond, func(t *testing.T) {
				t.Parallel()
				def, err := ParseSQL(testHeader + "-- batch: 10\n-- " + key + ": " + tc.cond + "\n" + validStatement)
				if tc.want == "" {
					require.NoError(t, err)
					got := def.Options.Where
					if key == "down_where" {
						got = def.Options.DownWhere
					}
					require.Equal(t, tc.cond, got)
					return
				}
				requireFileError(t, err, "", 4, key+": ", tc.want)
			})
		}
	}
}
