# The real `fluke run` on user data that is empty, tiny or malformed (issue 19 items 2, 6, 8).
# There is no local data source yet, so each mutated Kaggle-layout folder (made from the tiny
# synth data) is served as the competition zip by the loopback Kaggle server and goes through
# fetch -> baseline_knn (configs/baseline.json; the default effnet_dolg chain is not run here). Every case must either work (a valid submission) or fail with a message
# naming the user's file and line; never a crash, never an internal file, never rc 0 with an
# empty submission.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE
command -v python3 > /dev/null || { echo "skipped: python3 not found (the loopback server needs it)"; exit 77; }
$F run "$FLUKE_SRC/configs/tiny.json" --until synth > synth.log 2>&1 || bad "making tiny data"
src=$(cd "$(dirname "$(ls .fluke/checkouts/*/data/train.csv | head -1)")" && pwd)
TOKEN="fluke-test-token-$$"
spid=""
trap '[ -n "$spid" ] && kill $spid 2>/dev/null; chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT

# case NAME: copies the tiny data to $T/NAME/data (for the caller to mutate) and cds there.
new_case() {
    mkdir -p "$T/$1"
    cp -r "$src" "$T/$1/data"
    chmod -R u+w "$T/$1/data"
    cd "$T/$1"
}
# serve_and_run: serves ./data, runs fetch -> baseline_knn; sets rc, leaves run.log.
serve_and_run() {
    python3 "$FLUKE_SRC/tests/kaggle/server.py" --mode ok --token "$TOKEN" --data-dir data \
        > server.out 2> server.err &
    spid=$!
    wait_for 10 grep -q PORT server.out
    local port
    port=$(sed -n 's/^PORT //p' server.out)
    cat > k.json <<J
{ "extends": "$FLUKE_SRC/configs/baseline.json", "name": "in",
  "pipeline": {"source": "kaggle"},
  "kaggle": {"competition": "happy-whale-and-dolphin", "base_url": "http://127.0.0.1:$port"} }
J
    # GNU time's %M: the peak RSS of fluke and of the stage children it waited for.
    if [ -x /usr/bin/time ]; then
        KAGGLE_API_TOKEN=$TOKEN HOME=$T /usr/bin/time -o rss.txt -f %M $F run k.json > run.log 2>&1
    else
        KAGGLE_API_TOKEN=$TOKEN HOME=$T $F run k.json > run.log 2>&1
    fi
    rc=$?
    kill $spid 2>/dev/null; wait $spid 2>/dev/null; spid=""
}
# fails_naming DESC NEEDLE...: rc is 1 (a stage failed, not a crash), the log holds every needle
# and names no internal submission file.
fails_naming() {
    local d=$1 ok=1; shift
    [ "$rc" -eq 1 ] || ok=0
    for n in "$@"; do grep -qF -- "$n" run.log || ok=0; done
    grep -q '/submission.csv' run.log && ok=0
    grep -qiE 'signal|sanitizer|segmentation' run.log && ok=0
    [ -e out/in/submission.csv ] && ok=0
    if [ $ok -eq 1 ]; then ok "$d"; else bad "$d (rc=$rc)"; sed 's/^/    | /' run.log | tail -8; fi
}

new_case header_only_train
head -1 "$src/train.csv" > data/train.csv
serve_and_run
fails_naming "a header-only train.csv fails at its line 1 (it crashed baseline_knn)" \
    "data/train.csv:1: no train images"

new_case header_only_sample
head -1 "$src/sample_submission.csv" > data/sample_submission.csv
serve_and_run
fails_naming "a header-only sample_submission.csv fails (it published an empty submission)" \
    "data/sample_submission.csv:1: no test images"

new_case space_in_id
awk -F, 'NR == 3 { $3 = "ab cd" } { print }' OFS=, "$src/train.csv" > data/train.csv
serve_and_run
fails_naming "an individual_id with a space is named at its train.csv line" \
    "data/train.csv:3: individual_id \"ab cd\" contains a space"

new_case missing_test_image
gone=$(sed -n 4p "$src/sample_submission.csv" | cut -d, -f1)
rm data/test_images/"$gone"
serve_and_run
fails_naming "a listed but missing test image is named with its sample_submission.csv line" \
    "data/sample_submission.csv:4: image \"$gone\" is listed but missing"

new_case three_individuals
awk -F, 'NR == 1 { print; next } { $3 = "id" (NR % 3); print }' OFS=, "$src/train.csv" > data/train.csv
serve_and_run
check "three individuals: baseline_knn answers (it failed on an internal file; rc=$rc)" [ "$rc" -eq 0 ]
check "  each row holds new_individual and the three individuals" sh -c \
    "[ -s out/in/submission.csv ] && tail -n +2 out/in/submission.csv | awk -F, '{ n = split(\$2, a, \" \"); if (n != 4) exit 1 }' &&
     [ \$(tail -n +2 out/in/submission.csv | grep -c new_individual) -eq \$(tail -n +2 out/in/submission.csv | wc -l) ]"

new_case one_row_train
head -2 "$src/train.csv" > data/train.csv
serve_and_run
check "a one-row train.csv works (rc=$rc)" [ "$rc" -eq 0 ]
check "  its rows are new_individual and that individual" sh -c \
    "[ -s out/in/submission.csv ] && tail -n +2 out/in/submission.csv | awk -F, '{ if (split(\$2, a, \" \") != 2) exit 1 }'"

# A decompression bomb among the test images: a 3.5 KB progressive JPEG (the decode fixture)
# whose SOF claims 11585x11585, under the 2^27-pixel cap; it used to cost ~0.5 GB.
new_case jpeg_bomb
victim=$(sed -n 2p "$src/sample_submission.csv" | cut -d, -f1)
python3 - "$FLUKE_SRC/tests/fixtures/image/progressive.jpg" data/test_images/"$victim" <<'P'
import sys
d = bytearray(open(sys.argv[1], 'rb').read())
i = d.find(b'\xff\xc2')
d[i + 5:i + 9] = bytes([0x2D, 0x41, 0x2D, 0x41])
open(sys.argv[2], 'wb').write(d)
P
serve_and_run
fails_naming "a JPEG bomb among the test images is refused before allocating, naming it" \
    "$victim: decoding this 11585x11585 progressive JPEG" "above the per-image limit"
if [ -s rss.txt ]; then
    kib=$(tail -1 rss.txt)
    echo "     peak RSS of the run with the bomb: $((kib / 1024)) MiB"
    check "  the run with the bomb stayed under 256 MiB" [ "$kib" -lt 262144 ]
fi
finish
