package batches

import "strings"

// scanSQL finds the @name parameters of a statement and counts its statements,
// skipping string literals (with E'...' backslash escapes), quoted
// identifiers, dollar quotes and (nested) comments the way pgx's
// named-argument rewriting does, so that the parameters found are the ones
// pgx binds. The statement must be valid UTF-8.
func scanSQL(sql string) (params []string, statements int) {
	isLetter := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	// Bytes of non-ASCII characters count as letters of identifiers, as in pgx.
	isIdentStart := func(c byte) bool { return isLetter(c) || c == '_' || c >= 0x80 }
	pendingStatement := false
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '\'' || c == '"' || (c == 'e' || c == 'E') && i+1 < len(sql) && sql[i+1] == '\'':
			quote, end, escapes := c, i+1, false
			if c == 'e' || c == 'E' {
				quote, end, escapes = '\'', i+2, true
			}
			for end < len(sql) {
				if escapes && sql[end] == '\\' {
					end += 2
					continue
				}
				if sql[end] == quote {
					if end+1 < len(sql) && sql[end+1] == quote {
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
			if nl := strings.IndexAny(sql[i:], "\r\n"); nl >= 0 {
				i += nl + 1
			} else {
				i = len(sql)
			}
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			depth := 0
			for i += 2; i < len(sql); {
				if strings.HasPrefix(sql[i:], "/*") {
					depth++
					i += 2
				} else if strings.HasPrefix(sql[i:], "*/") {
					i += 2
					if depth == 0 {
						break
					}
					depth--
				} else {
					i++
				}
			}
		case c == '$':
			tagEnd := i + 1
			for tagEnd < len(sql) && (isIdentStart(sql[tagEnd]) || tagEnd > i+1 && isDigit(sql[tagEnd])) {
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
		case c == '@' && i+1 < len(sql) && (isLetter(sql[i+1]) || sql[i+1] == '_'):
			end := i + 1
			for end < len(sql) && (isLetter(sql[end]) || isDigit(sql[end]) || sql[end] == '_') {
				end++
			}
			params = append(params, sql[i+1:end])
			i = end
			pendingStatement = true
		case isIdentStart(c):
			// An identifier or key word, taken whole: a $ in it starts no
			// dollar quote, and a final e or E before ' makes no E'...' string.
			i++
			for i < len(sql) && (isIdentStart(sql[i]) || isDigit(sql[i]) || sql[i] == '$') {
				i++
			}
			pendingStatement = true
		case c == ';':
			if pendingStatement {
				statements++
			}
			pendingStatement = false
			i++
		default:
			if !strings.ContainsRune(" \t\n\r\f\v", rune(c)) {
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
