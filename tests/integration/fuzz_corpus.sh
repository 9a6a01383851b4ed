# The fuzz targets' seed corpora (tests/fuzz/corpus/<target>/), replayed through the plain-cc
# fuzz binaries of this build: every target has a corpus, every input passes the target's
# checks (in the sanitizer build, also without an ASan/UBSan report). `make fuzz` is what
# fuzzes; this keeps the targets and their corpora from rotting in every test run.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
B=$(dirname "$FLUKE")
S=${FLUKE_SRC:?run through tests/run.sh (FLUKE_SRC unset)}
export TMPDIR=$T # the targets' scratch files, also those of a target that aborts
targets=$(cd "$S/tests/fuzz" && ls fuzz_*.c | sed 's/\.c$//')
check "there are fuzz targets" [ -n "$targets" ]
for t in $targets; do
    bin="$B/fuzz/$t"
    if [ ! -x "$bin" ]; then bad "$t is built"; continue; fi
    n=$(ls "$S/tests/fuzz/corpus/$t" 2>/dev/null | wc -l)
    check "$t has a seed corpus" [ "$n" -gt 0 ]
    [ "$n" -gt 0 ] || continue
    "$bin" "$S/tests/fuzz/corpus/$t"/* > "$t.log" 2>&1
    rc=$?
    check "$t replays its $n seeds cleanly" [ $rc -eq 0 ]
    [ $rc -eq 0 ] || tail -n 20 "$t.log"
done
# The replay binary itself: a broken invariant aborts (the checks can fail).
printf '\001fluke-record 1\ntree 00\njson 0 00\n' > bad-record
check "a malformed record is refused, not a crash" "$B/fuzz/fuzz_store" bad-record
finish
