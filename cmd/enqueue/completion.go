package main

import (
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/backfill/backfill/internal/cli"
)

// completion is "enqueue completion bash|zsh": a script that completes the
// commands, each command's flags, and the versions of the backfill files
// (in --dir, $BACKFILL_DIR or the default) where a command takes one. It is
// built from the usage text, so it knows what "enqueue help" says.
//
//	source <(enqueue completion bash)     # in ~/.bashrc
//	source <(enqueue completion zsh)      # in ~/.zshrc, after compinit
func completion(w io.Writer, args []string) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		_, err := io.WriteString(w, commandUsage("completion"))
		return err
	}
	if len(args) != 1 || (args[0] != "bash" && args[0] != "zsh") {
		return cli.Usagef("completion takes one SHELL argument, bash or zsh")
	}
	script := bashCompletion()
	if args[0] == "zsh" {
		// zsh runs bash completion functions through bashcompinit (after
		// compinit, which a zsh setup with completion has run).
		script = "autoload -U +X bashcompinit && bashcompinit\n" + script
	}
	_, err := io.WriteString(w, script)
	return err
}

var flagPattern = regexp.MustCompile(`--[a-z][a-z-]*`)

// commandNames are the commands of the usage text, in its order.
func commandNames() []string {
	commands := usage[strings.Index(usage, "Commands:\n")+len("Commands:\n") : strings.Index(usage, "\nShared flags")]
	var names []string
	for _, l := range strings.Split(commands, "\n") {
		if strings.HasPrefix(l, "  ") && !strings.HasPrefix(l, "   ") {
			names = append(names, strings.Fields(l)[0])
		}
	}
	return names
}

// commandFlags are the flags of a command's usage: the lines that start
// with a flag (and name more, such as the health limits' line), not flags
// mentioned in the descriptions.
func commandFlags(name string) []string {
	part := commandUsage(name)
	if i := strings.Index(part, "\n\nShared flags"); i >= 0 {
		part = part[:i]
	}
	return flagLines(part)
}

func sharedFlags() []string {
	return flagLines(usage[strings.Index(usage, "Shared flags"):strings.Index(usage, "\nExamples:")])
}

func flagLines(text string) []string {
	var flags []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "--") {
			for _, f := range flagPattern.FindAllString(l, -1) {
				if strings.HasPrefix(strings.TrimSpace(l), f) || strings.Contains(l, "  "+f) {
					flags = append(flags, f)
				}
			}
		}
	}
	return uniq(flags)
}

func uniq(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// takesVersion: the commands whose argument is a VERSION.
func takesVersion(name string) bool {
	line := strings.SplitN(commandUsage(name), "\n", 2)[0]
	return strings.Contains(line, "VERSION")
}

func bashCompletion() string {
	names := commandNames()
	var cases, versions []string
	for _, n := range names {
		cases = append(cases, fmt.Sprintf("\t\t%s) flags=%q ;;", n, strings.Join(commandFlags(n), " ")))
		if takesVersion(n) {
			versions = append(versions, n)
		}
	}
	return fmt.Sprintf(`# enqueue completion for bash (and zsh through bashcompinit).
_enqueue() {
	local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
	local commands=%[1]q shared=%[2]q flags="" cmd="" dir="${BACKFILL_DIR:-%[5]s}" i
	# The command is the first word that is neither a flag nor a flag's value.
	for ((i = 1; i < COMP_CWORD; i++)); do
		case "${COMP_WORDS[i]}" in
		--dir) dir="${COMP_WORDS[i+1]}"; i=$((i + 1)) ;;
		--database-url|--redis-url|--schema|--lock-timeout|--statement-timeout) i=$((i + 1)) ;;
		-*) ;;
		*) [[ -z "$cmd" ]] && cmd="${COMP_WORDS[i]}" ;;
		esac
	done
	case "$prev" in
	--dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
	--database-url|--redis-url|--schema|--lock-timeout|--statement-timeout) return ;;
	esac
	if [[ -z "$cmd" ]]; then
		if [[ "$cur" == -* ]]; then
			COMPREPLY=($(compgen -W "$shared --help --version" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$commands help" -- "$cur"))
		fi
		return
	fi
	case "$cmd" in
%[3]s
	esac
	if [[ "$cur" == -* ]]; then
		COMPREPLY=($(compgen -W "$flags $shared --help" -- "$cur"))
		return
	fi
	case "$cmd" in
	%[4]s)
		local v=$(find "$dir" "$dir/manual" -maxdepth 1 -name '*.sql' 2>/dev/null | sed -n 's|.*/\([0-9][0-9]*\)_[^/]*$|\1|p' | sort -u)
		COMPREPLY=($(compgen -W "$v" -- "$cur")) ;;
	help) COMPREPLY=($(compgen -W "$commands" -- "$cur")) ;;
	completion) COMPREPLY=($(compgen -W "bash zsh" -- "$cur")) ;;
	esac
}
complete -F _enqueue enqueue
`, strings.Join(names, " "), strings.Join(sharedFlags(), " "), strings.Join(cases, "\n"), strings.Join(versions, "|"), cli.BackfillDirDefault)
}
