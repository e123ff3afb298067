package batches

import "strings"

// tokenKind is the kind of a token lexSQL found.
type tokenKind int

const (
	tokenQuoted  tokenKind = iota // a string literal, quoted name or dollar-quoted string
	tokenComment                  // a -- comment (with its line end) or a (nested) /* */ comment
	tokenWord                     // a name or key word
	tokenParam                    // @name
	tokenByte                     // any other byte, white space included
)

// lexSQL splits sql into tokens, skipping string literals (with E'...'
// backslash escapes), quoted identifiers, dollar quotes and (nested)
// comments the way pgx's named-argument rewriting (and PostgreSQL) does, and
// calls emit with each token and its byte offset. It returns what was still
// open at the end ("a comment", say), or "" when nothing was. The statement
// must be valid UTF-8.
func lexSQL(sql string, emit func(kind tokenKind, start int, text string)) (unclosed string) {
	isLetter := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	// Bytes of non-ASCII characters count as letters of identifiers, as in pgx.
	isIdentStart := func(c byte) bool { return isLetter(c) || c == '_' || c >= 0x80 }
	for i := 0; i < len(sql); {
		start, c := i, sql[i]
		kind := tokenByte
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
			if end >= len(sql) {
				unclosed = "a string literal or quoted name"
			}
			i, kind = min(end+1, len(sql)), tokenQuoted
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			if nl := strings.IndexAny(sql[i:], "\r\n"); nl >= 0 {
				i += nl + 1
			} else {
				i = len(sql)
			}
			kind = tokenComment
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			depth, closed := 0, false
			for i += 2; i < len(sql) && !closed; {
				if strings.HasPrefix(sql[i:], "/*") {
					depth++
					i += 2
				} else if strings.HasPrefix(sql[i:], "*/") {
					i += 2
					closed = depth == 0
					depth--
				} else {
					i++
				}
			}
			if !closed {
				unclosed = "a comment"
			}
			kind = tokenComment
		case c == '$':
			tagEnd := i + 1
			for tagEnd < len(sql) && (isIdentStart(sql[tagEnd]) || tagEnd > i+1 && isDigit(sql[tagEnd])) {
				tagEnd++
			}
			i++ // a lone $ (or $1) is a byte
			if tagEnd < len(sql) && sql[tagEnd] == '$' {
				tag := sql[start : tagEnd+1]
				if end := strings.Index(sql[tagEnd+1:], tag); end >= 0 {
					i = tagEnd + 1 + end + len(tag)
				} else {
					i, unclosed = len(sql), "a dollar-quoted string"
				}
				kind = tokenQuoted
			}
		case c == '@' && i+1 < len(sql) && (isLetter(sql[i+1]) || sql[i+1] == '_'):
			i++
			for i < len(sql) && (isLetter(sql[i]) || isDigit(sql[i]) || sql[i] == '_') {
				i++
			}
			kind = tokenParam
		case isIdentStart(c):
			// An identifier or key word, taken whole: a $ in it starts no
			// dollar quote, and a final e or E before ' makes no E'...' string.
			i++
			for i < len(sql) && (isIdentStart(sql[i]) || isDigit(sql[i]) || sql[i] == '$') {
				i++
			}
			kind = tokenWord
		default:
			i++
		}
		emit(kind, start, sql[start:i])
	}
	return unclosed
}

// isSpace reports whether a tokenByte is white space to PostgreSQL.
func isSpace(text string) bool { return strings.Contains(" \t\n\r\f\v", text) }

// scanSQL finds the @name parameters of a statement and counts its
// statements, the way pgx's named-argument rewriting sees them, so that the
// parameters found are the ones pgx binds. The statement must be valid UTF-8.
func scanSQL(sql string) (params []string, statements int) {
	pendingStatement := false
	lexSQL(sql, func(kind tokenKind, _ int, text string) {
		switch {
		case kind == tokenComment:
		case kind == tokenParam:
			params = append(params, text[1:])
			pendingStatement = true
		case text == ";":
			if pendingStatement {
				statements++
			}
			pendingStatement = false
		case kind != tokenByte || !isSpace(text):
			pendingStatement = true
		}
	})
	if pendingStatement {
		statements++
	}
	return params, statements
}
