# A store write error while committing exits 3 (the README's "store error"), not 1 (a stage
# failure), leaves no record, and the next run recovers. The write fails for real in the OS: the
# record's shard directory records/ab/ refuses new entries after the stage ran and its object and
# tree were stored: read-only for an ordinary user, immutable (chattr +i, which binds root too)
# when run as root. The store's ENOSPC hook (FLUKE_FAULT=commit_write:N) covers each write of a
# commit in exec_faults.sh. What this does not prove: a real full disk; ENOSPC takes the same path
# (a failed write, fsync or rename in the store).
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE_TS
: > empty.txt
printf '{"name": "s", "text": {"a": {"op": "upper", "from": "file:empty.txt"}}}' > s.json
$F run s.json > first.log 2>&1 || bad "first run"
rec=$(find .fluke/records -type f | head -1)
shard=$(dirname "$rec")
# Lose the record (and its checkout) so the stage runs and commits again; block its shard.
rm -f "$rec"; chmod -R u+w .fluke/checkouts; rm -rf .fluke/checkouts/*
if [ "$(id -u)" -eq 0 ]; then
    chattr +i "$shard" 2> /dev/null || skip "chattr +i is not supported here (as root, nothing else makes a store write fail for real)"
    unblock() { chattr -i "$shard"; }
    oserr='Operation not permitted'
else
    chmod 555 "$shard"
    unblock() { chmod 755 "$shard"; }
    oserr='Permission denied'
fi
trap 'unblock 2> /dev/null; chmod -R u+w "$T" 2> /dev/null; rm -rf "$T"' EXIT
$F run s.json > full.log 2>&1; rc=$?
unblock
sed 's/^/     /' full.log
check "a failed store write while committing exits 3" [ "$rc" -eq 3 ]
check "the message names the commit and the OS error" grep -Eq "committing 'a'.*$oserr" full.log
check "no record was written" [ -z "$(find .fluke/records -type f)" ]
$F run s.json > again.log 2>&1; rc=$?
check "with the shard writable again the next run commits" sh -c "[ $rc -eq 0 ] && grep -q '1 ran' again.log"
$F verify s.json > v.log 2>&1
check "verify is clean afterwards" grep -q ' 0 corrupt' v.log
# A stage's own bad output is still the stage's failure (exit 1), not the store's.
printf '{"text": {"l": {"op": "symlink", "from": "file:empty.txt"}}}' > l.json
$F run l.json > l.log 2>&1; rc=$?
check "a symlink in the output exits 1, naming it" sh -c "[ $rc -eq 1 ] && grep -q 'link, which is not a regular file' l.log"
finish
