# The integration scripts themselves: shapes that make a check unable to fail.
#  1. `check "..." [ a ] && [ b ]`: only the first command is checked (also ||, |, ;). A check
#     is one command; several conditions go into `sh -c '...'`, a function, or separate checks.
#  2. "skipped:" followed by a status other than 77: tests/run.sh would count a pass.
#  3. a bare sleep: waiting a fixed time and hoping the event happened. Poll for the event with
#     wait_for (_lib.sh); a sleep that is the point (a random kill moment) says so with a
#     "lint: sleep is" comment on its line.
# Set LINT_DIR to lint other scripts (used to show that a broken variant is caught).
# sanitizer: yes
set -u
: "${FLUKE_SRC:?run through tests/run.sh (FLUKE_SRC unset)}"
dir=${LINT_DIR:-$FLUKE_SRC/tests/integration}
fails=0
for f in "$dir"/*.sh; do
    out=$(awk -v file="$(basename "$f")" '
    # Reads logical lines (continuations and multi-line quotes joined); prints offending ones.
    function scan(s,   i, c, q, depth, rest) {
        q = ""; depth = 0; rest = ""
        for (i = 1; i <= length(s); i++) {
            c = substr(s, i, 1)
            if (q == "\x27") { if (c == "\x27") q = ""; continue }
            if (q == "\"") {
                if (c == "\\") { i++; continue }
                if (c == "\"") q = ""
                continue
            }
            if (c == "\\") { i++; continue }
            if (c == "\x27" || c == "\"") { q = c; continue }
            if (c == "#" && depth == 0 && (i == 1 || substr(s, i - 1, 1) ~ /[ \t]/)) break
            if (c == "$" && substr(s, i + 1, 1) == "(") { depth++; i++; continue }
            if (depth > 0) { if (c == "(") depth++; else if (c == ")") depth--; continue }
            rest = rest c
        }
        open_quote = q
        return rest
    }
    heredoc != "" { if ($0 == heredoc) heredoc = ""; next }  # a here-document body is data
    {
        buf = (buf == "" ? $0 : buf "\n" $0)
        if (start == 0) start = NR
        scan(buf)
        if (open_quote != "" || buf ~ /\\$/) next
        line = buf; at = start; buf = ""; start = 0
        bare = scan(line)
        if (match(bare, /<<-?[ \t]*[A-Za-z_]+/)) {
            heredoc = substr(bare, RSTART, RLENGTH); sub(/^<<-?[ \t]*/, "", heredoc)
        } else if (match(line, /<<-?[ \t]*[\x27"][A-Za-z_]+[\x27"]/)) {
            heredoc = substr(line, RSTART, RLENGTH); sub(/^<<-?[ \t]*[\x27"]/, "", heredoc)
            sub(/[\x27"]$/, "", heredoc)
        }
        if (bare ~ /^[ \t]*check[ \t]/ && bare ~ /(&&|\|\||\||;)/)
            printf "%s:%d: a check followed by && || | or ; checks only its first command:\n  %s\n", file, at, line
        if (line ~ /skipped:/ && line ~ /exit[ \t]+[0-9]+/ && line !~ /exit[ \t]+77/)
            printf "%s:%d: a skip must exit 77, not pass:\n  %s\n", file, at, line
        if (file != "_lib.sh" && file != "lint.sh" && bare ~ /(^|[ \t;&|(])sleep[ \t]/ && line !~ /lint: sleep is/)
            printf "%s:%d: a fixed sleep; poll for the event with wait_for:\n  %s\n", file, at, line
    }' "$f")
    if [ -n "$out" ]; then
        echo "$out"
        fails=$((fails + 1))
    fi
done
[ $fails -eq 0 ] && echo "all passed: no check that cannot fail in $dir" || { echo "$fails scripts with findings"; exit 1; }
