# The executor, store and pipeline tests (exec_*.sh, store_*.sh, pipeline_*.sh, campaign_*.sh) once more as an ordinary user
# (uid/gid 65534, no groups, no capabilities): root bypasses every permission check, so a store
# that only works for root would pass the root run. Everything the scripts need (binaries,
# scripts, configs, the loopback server) is copied into a world-readable folder first, since the
# checkout itself may sit under a folder the user cannot enter (/root is 0700 on CI).
# Normal build only: permissions do not depend on the sanitizers, and the rerun costs minutes.
set -u
: "${FLUKE:?run through tests/run.sh (FLUKE unset)}" "${FLUKE_TS:?}" "${FLUKE_SRC:?}"
NR_UID=${FLUKE_NONROOT_UID:-65534}
if [ "$(id -u)" -ne 0 ]; then
    echo "skipped: not root (the other scripts already ran as uid $(id -u))"; exit 77
fi
if ! command -v setpriv > /dev/null; then
    echo "skipped: setpriv not found (util-linux), cannot drop privileges"; exit 77
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/fluke-nonroot-XXXXXX")
trap 'rm -rf "$W"' EXIT
chmod 755 "$W"
mkdir -p "$W/bin" "$W/src/tests/integration" "$W/src/tests/kaggle" "$W/src/tests/fixtures" "$W/home" "$W/tmp"
cp "$FLUKE" "$FLUKE_TS" "$W/bin/" &&
cp "$FLUKE_SRC"/tests/integration/_lib.sh "$FLUKE_SRC"/tests/integration/exec_*.sh \
   "$FLUKE_SRC"/tests/integration/pipeline_*.sh "$FLUKE_SRC"/tests/integration/store_*.sh \
   "$FLUKE_SRC"/tests/integration/campaign_*.sh "$W/src/tests/integration/" &&
cp "$FLUKE_SRC"/tests/kaggle/server.py "$W/src/tests/kaggle/" &&
cp -r "$FLUKE_SRC"/tests/fixtures/image "$FLUKE_SRC"/tests/fixtures/pt "$W/src/tests/fixtures/" &&
cp -r "$FLUKE_SRC"/tests/integration/fake_slurm "$W/src/tests/integration/" &&
cp -r "$FLUKE_SRC/configs" "$W/src/" || { echo "FAIL copying the test inputs to $W"; exit 1; }
chmod -R a+rX "$W"
chown "$NR_UID:$NR_UID" "$W/home" "$W/tmp"
as_user() { setpriv --reuid="$NR_UID" --regid="$NR_UID" --clear-groups env HOME="$W/home" TMPDIR="$W/tmp" "$@"; }
as_user "$W/bin/$(basename "$FLUKE")" --help > /dev/null 2>&1
case $? in
    0) ;;
    126) echo "skipped: uid $NR_UID cannot execute the binaries copied to $W (a noexec mount, or a folder above it closed to that user: set TMPDIR)"; exit 77 ;;
    *) echo "FAIL the copied fluke does not start as uid $NR_UID"; exit 1 ;;
esac
san=0
grep -qa __asan_init "$FLUKE_TS" && san=1
echo "as uid $NR_UID (copies in $W)$( [ $san -eq 1 ] && echo ', sanitizer build: marked scripts only')"
fails=0 n=0
# The reproduction from issue 19: the tiny pipeline in a folder the user owns. A checkout is
# built in tmp/ and renamed into checkouts/, which a read-only directory cannot be (as non-root).
mkdir "$W/tiny" && chown "$NR_UID:$NR_UID" "$W/tiny"
(cd "$W/tiny" && as_user "$W/bin/$(basename "$FLUKE")" run "$W/src/configs/tiny.json" > run.log 2>&1)
rc=$?
n=$((n + 1))
if [ $rc -eq 0 ] && [ -s "$W/tiny/out/tiny/submission.csv" ]; then
    echo "ok   fluke run configs/tiny.json as uid $NR_UID"
else
    echo "FAIL fluke run configs/tiny.json as uid $NR_UID (rc=$rc):"; sed 's/^/     /' "$W/tiny/run.log"
    fails=$((fails + 1))
fi
# ... and its checkouts are read-only for that user (root would not notice if they were not).
n=$((n + 1))
co=$(find "$W/tiny/.fluke/checkouts" -mindepth 1 -maxdepth 1 -type d | head -1)
if [ -n "$co" ] && [ -z "$(find "$W/tiny/.fluke/checkouts" -mindepth 1 -perm /222)" ] &&
   ! as_user touch "$co/added" 2> /dev/null; then
    echo "ok   the checkouts are read-only for uid $NR_UID"
else
    echo "FAIL a checkout is writable for uid $NR_UID (or none exists: '$co')"
    find "$W/tiny/.fluke/checkouts" -mindepth 1 -perm /222 | head -5 | sed 's/^/     /'
    fails=$((fails + 1))
fi
for t in "$W"/src/tests/integration/exec_*.sh "$W"/src/tests/integration/pipeline_*.sh "$W"/src/tests/integration/store_*.sh \
         "$W"/src/tests/integration/campaign_*.sh; do
    [ $san -eq 1 ] && ! grep -q '^# sanitizer: yes' "$t" && continue
    name=$(basename "$t" .sh)
    # the fake Slurm's store checks ran as uid 65534 when it was written; here they would add a
    # minute of Python start-up to every CI run for no new path
    [ "$name" = exec_slurm ] && continue
    # embed training and pseudo rounds write through the same store, checkout and work-dir paths
    # as the tiny run above and exec_resume: as uid 65534 they would only repeat 45 s of training
    case $name in pipeline_embed | pipeline_pseudo) continue ;; esac
    n=$((n + 1))
    # 6 of exec_kill's 20 kill trials: the root run has done all 20; here it is the permissions
    as_user FLUKE_KILL_TRIALS=6 FLUKE="$W/bin/$(basename "$FLUKE")" FLUKE_TS="$W/bin/$(basename "$FLUKE_TS")" \
        FLUKE_SRC="$W/src" bash "$t" > "$W/$name.log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        echo "ok   $name as uid $NR_UID"
    elif [ $rc -eq 77 ]; then
        echo "ok   $name as uid $NR_UID: $(grep -m1 '^skipped:' "$W/$name.log")"
    else
        echo "FAIL $name as uid $NR_UID (rc=$rc):"; sed 's/^/     /' "$W/$name.log"
        fails=$((fails + 1))
    fi
done
[ $n -gt 2 ] || { echo "FAIL no exec_*/pipeline_* script found"; exit 1; }
[ $fails -eq 0 ] && echo "all $n passed as uid $NR_UID" || { echo "$fails of $n failed"; exit 1; }
