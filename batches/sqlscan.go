package batches

import "strings"

// scanSQL finds the @name parameters of a statement and counts its statements,
// skipping string literals, quoted identifiers, dollar quotes and comments the
// way pgx's named-argument rewriting does.
func scanSQL(sql string) (params []string, statements int) {
	isIdent := func(c byte) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	pendingStatement := false
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '\'' || c == '"':
			end := i + 1
			for end < len(sql) {
				if sql[end] == c {
					if end+1 < len(sql) && sql[end+1] == c {
						end += 2
						continue
					}
					break
				}
				end++
			}
			i = end + 1
			pendingStatement = true
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			if nl := strings.IndexByte(sql[i:], '\n'); nl >= 0 {
				i += nl + 1
			} else {
				i = len(sql)
			}
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			if end := strings.Index(sql[i+2:], "*/"); end >= 0 {
				i += end + 4
			} else {
				i = len(sql)
			}
		case c == '$' && (i == 0 || !isIdent(sql[i-1])):
			tagEnd := i + 1
			for tagEnd < len(sql) && isIdent(sql[tagEnd]) && !(sql[tagEnd] >= '0' && sql[tagEnd] <= '9' && tagEnd == i+1) {
				tagEnd++
			}
			if tagEnd < len(sql) && sql[tagEnd] == '$' {
				tag := sql[i : tagEnd+1]
				if end := strings.Index(sql[tagEnd+1:], tag); end >= 0 {
					i = tagEnd + 1 + end + len(tag)
				} else {
					i = len(sql)
				}
			} else {
				i++
			}
			pendingStatement = true
		case c == '@' && i+1 < len(sql) && isIdent(sql[i+1]) && (i == 0 || sql[i-1] != '@'):
			end := i + 1
			for end < len(sql) && isIdent(sql[end]) {
				end++
			}
			params = append(params, sql[i+1:end])
			i = end
			pendingStatement = true
		case c == ';':
			if pendingStatement {
				statements++
			}
			pendingStatement = false
			i++
		default:
			if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
				pendingStatement = true
			}
			i++
		}
	}
	if pendingStatement {
		statements++
	}
	return params, statements
}
