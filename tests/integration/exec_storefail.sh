# A store write error while committing exits 3 (the README's "store error"), not 1 (a stage
# failure), leaves no record, and the next run recovers. The write fails for real in the OS: the
# record's shard directory records/ab/ is replaced by a plain file, so writing the record fails
# with ENOTDIR after the stage ran and its object and tree were stored: the commit itself fails,
# as root too (no permission involved). The store's ENOSPC hook (FLUKE_FAULT=commit_write:N)
# covers each write of a commit in exec_faults.sh. What this does not prove: a real full disk (no
# tmpfs without root); ENOSPC takes the same path (a failed write, fsync or rename in the store).
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
: > empty.txt
printf '{"name": "s", "text": {"a": {"op": "upper", "from": "file:empty.txt"}}}' > s.json
$F run s.json > first.log 2>&1 || bad "first run"
rec=$(find .fluke/records -type f | head -1)
shard=$(dirname "$rec")
# Lose the record (and its checkout) so the stage runs and commits again; block its shard.
rm -rf "$shard" .fluke/checkouts/*; echo "not a directory" > "$shard"
$F run s.json > full.log 2>&1; rc=$?
sed 's/^/     /' full.log
check "a failed store write while committing exits 3" [ "$rc" -eq 3 ]
check "the message names the commit and the OS error" grep -Eq "committing 'a'.*Not a directory" full.log
rm -f "$shard"
check "no record was written" [ -z "$(find .fluke/records -type f)" ]
$F run s.json > again.log 2>&1; rc=$?
check "with the shard back the next run commits" sh -c "[ $rc -eq 0 ] && grep -q '1 ran' again.log"
$F verify s.json > v.log 2>&1
check "verify is clean afterwards" grep -q ' 0 corrupt' v.log
# A stage's own bad output is still the stage's failure (exit 1), not the store's.
printf '{"text": {"l": {"op": "symlink", "from": "file:empty.txt"}}}' > l.json
$F run l.json > l.log 2>&1; rc=$?
check "a symlink in the output exits 1, naming it" sh -c "[ $rc -eq 1 ] && grep -q 'link, which is not a regular file' l.log"
finish
