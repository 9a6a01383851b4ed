# Code identity (dag/codeid_gen.c and the Makefile's codeid rules): a stage's id covers the
# objects the linker pulls in for it, their sources, headers and flags, and nothing else.
# The existing stages stand in for the later ones: baseline (pixel kNN) links
# stages/labels/baseline_pixel_knn.c and stages/labels/baselines.h, which no other stage does;
# baseline and score share stages/labels/map5.c; no stage links kaggle/submit.c (only
# `fluke submit` does; crop links the YOLO code, resize and the CSV readers since issue 11, and
# embed_train the DOLG code since issue 12).
# The test copies the sources and this build's objects (times kept) to a temp dir and runs
# the real Makefile there, so each edit recompiles one file and reruns only the id tool.
. "$(dirname "$0")/_lib.sh"
B=$(cd "$(dirname "$FLUKE")" && pwd)
BN=$(basename "$B")
S=${FLUKE_SRC:?run through tests/run.sh (FLUKE_SRC unset)}
for f in "$B/codeid_gen" "$B/flags/overrides" "$B/gen/codeid/synth.c"; do
    [ -e "$f" ] || { echo "FAIL $B has no $f: build it with this Makefile first"; exit 1; }
done
mkdir src src/tests src/$BN
cp -a "$S/Makefile" "$S/artifacts" "$S/configs" "$S/dag" "$S/kaggle" "$S/runtime" "$S/stages" src/
cp -a "$S/tests/teststages" src/tests/
cp -a "$B/obj" "$B/gen" "$B/flags" "$B/codeid_gen" src/$BN/
D=src/$BN/gen/codeid
eval "set -- $(cat "$B/flags/overrides")"
OVR=("$@")
mk() { make -C src --no-print-directory BUILD="$BN" "${OVR[@]}" "$@" > make.log 2>&1 || { cat make.log; return 1; }; }
ids() { for f in "$D"/*.c; do printf '%s %s\n' "$(basename "$f" .c)" "$(sed -n 's/.*= "\([0-9a-f]*\)";/\1/p' "$f")"; done; }
# changed BEFORE AFTER: the stage names whose id differs, sorted, space-separated.
changed() { join "$1" "$2" | awk '$2 != $3 { printf "%s%s", sep, $1; sep = " " }'; }
edit() { # FILE TEXT: append a line, make the ids, record them in after
    cp after before
    touch marker
    echo "$2" >> "src/$1"
    mk codeids && ids > after
}

well_formed() { [ "$(wc -l < after)" -ge 6 ] && ! grep -Evq '^[a-z_0-9]+ [0-9a-f]{32}$' after; }
mk codeids && ids > after
check "every stage has a 32-hex-digit id" well_formed
mk -q codeids
check "a second make has nothing to do" [ $? -eq 0 ]
(D=$B/gen/codeid; ids) > built
check "the ids are those the build made" cmp -s after built

# A real code change (not a comment) in a source no stage links: the Kaggle submission client.
edit kaggle/submit.c 'int fl__codeid_probe_submit(void) { return 1; }'
check "the edited submit source was recompiled" grep -q "submit.o" make.log
check "a source no stage links changes no id" [ -z "$(changed before after)" ]
check "... and rewrites no id file" [ -z "$(find "$D" -name '*.c' -newer marker)" ]
mk -q codeids
check "... and a second make has nothing to do" [ $? -eq 0 ]

edit stages/labels/baseline_pixel_knn.c 'int fl__codeid_probe_knn(void) { return 2; }'
check "a source only baseline links changes baseline's id only" [ "$(changed before after)" = baseline ]
check "... and rewrites only baseline's id file" \
    [ "$(find "$D" -name '*.c' -newer marker | xargs -n1 basename)" = baseline.c ]

edit stages/labels/map5.c 'int fl__codeid_probe_map5(void) { return 3; }'
check "a source baseline and score share changes both, and only them" \
    [ "$(changed before after)" = "baseline score" ]

edit stages/labels/baselines.h 'int fl__codeid_probe_decl(void);'
check "a header only baseline's sources include changes baseline's id only" \
    [ "$(changed before after)" = baseline ]

edit tests/teststages/text_stages.c 'int fl__codeid_probe_ts(void) { return 4; }'
check "a test stage's source changes its id only" [ "$(changed before after)" = text_stages ]
check "... without rerunning the library's ids" [ ! "$D/lib.stamp" -nt marker ]

edit stages/synth/species.c '/* a comment is part of the source too */'
check "any byte of a linked source changes the id" [ "$(changed before after)" = "baseline crop detector_train folds knn synth" ]

# The id in the binary is the generated one.
mk "$BN/fluke" && (cd src && "./$BN/fluke" explain baseline_knn configs/baseline.json) > explain.log 2>&1
check "the rebuilt binary carries the new id" \
    grep -q "code $(awk '$1 == "baseline" { print substr($2, 1, 12) }' after)" explain.log

# The tool alone: flags, missing dependency files and a failing nm are never silent.
cd src
objs=$(find "$BN/obj" -name '*.o' ! -path "*/obj/codeid/*" ! -path "*/obj/tests/*" ! -name main.o | sort)
tool() { "./$BN/codeid_gen" "$@" "$BN/obj/stages/score.o" -- $objs; }
a=$(tool -c "$BN/flags/cc")
check "the tool agrees with the build" [ "$a" = "score $(awk '$1 == "score" { print $2 }' ../after)" ]
sed 's/-O2/-O3/' "$BN/flags/cc" > ../cc-O3
check "another compile flag changes the id" [ "$(tool -c ../cc-O3)" != "$a" ]
check "the same inputs give the same id" [ "$(tool -c "$BN/flags/cc")" = "$a" ]
mv "$BN/obj/stages/labels/csv.d" ../csv.d
tool -c "$BN/flags/cc" > /dev/null 2> err.log; rc=$?
check "a needed object without a dependency file is an error" [ $rc -ne 0 ]
check "... that names the file" grep -q "csv.d" err.log
mv ../csv.d "$BN/obj/stages/labels/csv.d"
NM=false tool > /dev/null 2>&1; rc=$?
check "a failing nm is an error" [ $rc -ne 0 ]
"./$BN/codeid_gen" "$BN/obj/stages/missing.o" -- $objs > /dev/null 2>&1; rc=$?
check "a missing stage object is an error" [ $rc -ne 0 ]
cd ..
finish
