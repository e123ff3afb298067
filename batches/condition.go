package batches

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// checkCondition makes sure cond (a where or down_where) is at most one
// boolean expression. The engine pastes it as "key > $1 AND (cond\n)", so a
// condition that closes a parenthesis it did not open ("1=1) OR (1=1")
// would escape the batch's key range, and a ';' would start a statement.
// Parentheses and semicolons inside string literals, quoted names,
// dollar-quoted strings and comments do not count. What the expression
// means is left to PostgreSQL, which plans it before anything is enqueued.
func checkCondition(cond string) error {
	switch {
	case strings.TrimSpace(cond) == "":
		return fmt.Errorf("the condition is empty")
	case !utf8.ValidString(cond):
		return fmt.Errorf("the condition is not valid UTF-8")
	}
	var (
		depth   int
		content bool // more than comments and white space
		err     error
	)
	at := func(start int) int { return utf8.RuneCountInString(cond[:start]) + 1 }
	unclosed := lexSQL(cond, func(kind tokenKind, start int, text string) {
		switch {
		case err != nil, kind == tokenComment, kind == tokenByte && isSpace(text):
			return
		case text == "(":
			depth++
		case text == ")":
			if depth--; depth < 0 {
				err = fmt.Errorf("a ')' at character %d closes a parenthesis the condition did not open; a condition must be one expression", at(start))
			}
		case text == ";":
			err = fmt.Errorf("a ';' at character %d ends the condition; a condition must be one expression, not statements", at(start))
		}
		content = true
	})
	switch {
	case err != nil:
		return err
	case unclosed != "":
		return fmt.Errorf("%s is not closed", unclosed)
	case depth > 0:
		return fmt.Errorf("%d '(' not closed; a condition must be one expression", depth)
	case !content:
		return fmt.Errorf("the condition has nothing but comments")
	}
	return nil
}
