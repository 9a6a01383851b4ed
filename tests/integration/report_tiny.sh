# The run report (issue 16): configs/tiny.json's run writes out/tiny/report.html, which renders in
# headless Chromium (screenshot not blank, no console message), is well-formed, links nothing
# outside itself, and holds the DAG with every stage, one curve per fold and the threshold plot.
# A no-op rerun reruns nothing and reports every stage cached; `fluke report` rebuilds it from the
# store alone; a run whose fold fails still gets a report that shows the failure.
. "$(dirname "$0")/_lib.sh"
# FLUKE_CHROMIUM: the browser to use ("" shows the skip).
CHROME=${FLUKE_CHROMIUM-$(command -v chromium || command -v chromium-browser || true)}
[ -n "$CHROME" ] || skip "chromium is not installed (Debian's chromium package; ci/deps.sh installs it as root)"
command -v python3 > /dev/null || skip "python3 not found (the report checks are python)"
PY="python3 $FLUKE_SRC/tests/integration/report_check.py"
F=$FLUKE
E=$FLUKE_SRC/configs/tiny.json
# render HTML PNG DOM: a screenshot and the DOM after parsing; console messages into PNG.console.
render() {
    local url="file://$T/$1"
    timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --user-data-dir="$T/chrome" --window-size=1280,2400 --enable-logging=stderr --v=0 \
        --screenshot="$T/$2" "$url" > /dev/null 2> "$2.console"
    timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --user-data-dir="$T/chrome" \
        --enable-logging=stderr --v=0 --dump-dom "$url" > "$3" 2>> "$2.console"
}
no_console() { ! grep -E 'CONSOLE|Uncaught' "$1.console"; } # PNG

# The console check itself: a page with a script error is caught.
printf '<html><body><p>x</p><script>nosuch();</script></body></html>' > bad.html
render bad.html bad.png bad.dom
check "the console check sees a page's script error" grep -q 'Uncaught ReferenceError' bad.png.console

$F run "$E" > r1.log 2>&1; rc=$?
check "tiny runs (rc=$rc)" [ $rc -eq 0 ]
check "the run says where its report is" grep -q '^\[fluke\] report out/tiny/report.html$' r1.log
R=out/tiny/report.html
stages=$($F dag "$E" | grep -v '^ ' | sed 's/  — .*//')
check "the plan has its 10 stages" [ "$(echo "$stages" | wc -l)" -eq 10 ]
check "the report is well-formed XHTML" $PY wellformed $R
if command -v xmllint > /dev/null; then check "... xmllint agrees" xmllint --noout $R; fi
check "it links nothing outside itself, its images are embedded JPEGs" $PY offline $R
render $R shot.png dom.html
check "Chromium renders it without a console message" no_console shot.png
check "the screenshot is not blank" $PY png shot.png
# shellcheck disable=SC2086
check "the DOM: the DAG with every stage, a curve per fold, the threshold plot" $PY dom dom.html 2 $stages
check "the first run ran every stage" $PY count-state dom.html ran 10
check "an empty series (tiny has no validation loss) is drawn as 'no data'" grep -q 'val (no data)' dom.html
check "the contact sheet and the neighbours are there" sh -c \
    "grep -q 'id=\"contact-sheet\" data-images=\"12\"' dom.html && grep -q 'id=\"neighbours\" data-queries=\"6\"' dom.html"
check "the hidden-truth score and the per-species bars are there" sh -c \
    "grep -q 'id=\"truth-score\"' dom.html && grep -q 'id=\"species-bars\"' dom.html"

# A no-op rerun: nothing reruns, the report says every stage was reused and what that saved.
$F run "$E" > r2.log 2>&1
check "a rerun is fully cached (the report is no stage)" all_cached r2.log 10
check "its report shows all 10 cached" $PY count-state $R cached 10
check "... and the time the cache saved" grep -q 'saved by the cache: [0-9]' $R

# On demand, from the store alone.
rm -rf out
$F report "$E" > rep.log 2>&1; rc=$?
check "fluke report rebuilds it from the store (rc=$rc)" sh -c "[ $rc -eq 0 ] && [ -s $R ] && grep -qx 'out/tiny/report.html' rep.log"
check "... listing every stage cached" $PY count-state $R cached 10
check "... and writing nothing else into out/tiny" [ "$(ls out/tiny)" = report.html ]

# A fold that fails (GeM p 100 overflows: a NaN loss): the run fails, the report shows it.
printf '{"extends": "%s", "name": "bad", "embed": {"dolg": {"gem_p": 100}}}' "$E" > bad.json
$F run bad.json > r3.log 2>&1; rc=$?
check "the NaN fold fails the run (rc=$rc)" [ $rc -eq 1 ]
check "the failed run still writes its report" sh -c "grep -q '^\[fluke\] report out/bad/report.html$' r3.log && [ -s out/bad/report.html ]"
check "... well-formed" $PY wellformed out/bad/report.html
render out/bad/report.html bad_shot.png bad_dom.html
check "... rendering without a console message" no_console bad_shot.png
check "... not blank" $PY png bad_shot.png
check "... saying the run failed" grep -q 'id="run-failed"' bad_dom.html
check "... with embed_train[0] failed in the DAG" $PY state bad_dom.html 'embed_train[0]' failed
check "... and its curve panel naming the NaN instead of a chart" sh -c \
    "grep -A3 'data-node=\"embed_train\[0\]\" data-fold=\"0\"' bad_dom.html | grep -q 'NaN'"
check "... the stages after it not run (skipped)" $PY state bad_dom.html knn skipped
check "... the identification section saying why it is empty" sh -c \
    "grep -q 'no CV' bad_dom.html && grep -q 'no threshold plot' bad_dom.html"
finish
