# configs/happywhale.json (the seed's recipe, SPECS.md section 2) and configs/happywhale-plus.json
# (the top solutions' strongest ingredients) load, plan and dry-run on any machine, without
# network (inside `unshare -n` where that works), and so do local-source variants of them.
# sanitizer: yes
. "$(dirname "$0")/_lib.sh"
F=$FLUKE
C=$FLUKE_SRC/configs
NET=""
unshare -n true 2> /dev/null && NET="unshare -n" # no network at all: nothing may need one
# val CONFIG PYTHON-EXPR: the expression over the effective config c (fluke config) is true.
val() { $F config "$1" | python3 -c "import json, sys; c = json.load(sys.stdin); sys.exit(0 if ($2) else 1)"; }

# rounds_planned DOT R: rounds 1..R each read the previous knn, retrain and embed 5 folds (from
# the previous round's models) into knn[r]; the last knn feeds score; no round R+1.
edge() { grep -qF "\"$2\" -> \"$3\"" "$1"; }
rounds_planned() {
    local r k p t
    for r in $(seq 1 "$2"); do
        p=knn; t=embed_train
        [ "$r" -gt 1 ] && p="knn[$((r - 1))]"
        edge "$1" "$p" "pseudo[$r]" || return 1
        for k in 0 1 2 3 4; do
            [ "$r" -gt 1 ] && t="retrain[$((r - 1))]" || t=embed_train
            edge "$1" "pseudo[$r]" "retrain[$r][$k]" && edge "$1" "embed[$r][$k]" "knn[$r]" || return 1
            if [ "$r" -gt 1 ]; then edge "$1" "retrain[$((r - 1))][$k]" "retrain[$r][$k]" || return 1
            else edge "$1" "embed_train[$k]" "retrain[$r][$k]" || return 1; fi
        done
    done
    edge "$1" "knn[$2]" score && ! grep -qF "pseudo[$(($2 + 1))]" "$1"
}

for c in happywhale happywhale-plus; do
    $NET $F dag "$C/$c.json" --dot > $c.dot 2> $c.err; rc=$?
    check "$c: dag --dot ${NET:+(no network) }(rc=$rc)" [ $rc -eq 0 ]
    check "$c: the Kaggle data into the detector, crops and folds" sh -c \
        "grep -q '\"fetch\" -> \"detector_train\"' $c.dot && grep -q '\"fetch\" -> \"crop\"' $c.dot && grep -q '\"fetch\" -> \"folds\"' $c.dot"
    check "$c: the public yolov5s and B7 weights are downloaded by their own nodes" sh -c \
        "grep -q '\"detector_weights\" -> \"detector_train\"' $c.dot && grep -q '\"weights\" -> \"embed_train\[0\]\"' $c.dot"
    check "$c: 5 folds trained and embedded, all into knn, then score" sh -c \
        "for k in 0 1 2 3 4; do grep -q \"\\\"embed_train\[\$k\]\\\" -> \\\"embed\[\$k\]\\\"\" $c.dot && grep -q \"\\\"embed\[\$k\]\\\" -> \\\"knn\\\"\" $c.dot || exit 1; done;
         ! grep -q 'embed_train\[5\]' $c.dot && grep -q '\"knn\" -> \"score\"' $c.dot"
    R=1; [ $c = happywhale-plus ] && R=2
    check "$c: $R pseudo round(s): pseudo[r] from the previous knn, 5 retrained folds, knn[r] into score" \
        rounds_planned $c.dot $R
    $NET $F run "$C/$c.json" --dry-run > $c.dry 2>&1; rc=$?
    check "$c: run --dry-run lists every stage missing, runs none (rc=$rc)" sh -c \
        "[ $rc -eq 0 ] && grep -q '^missing  embed_train\[4\] ' $c.dry && ! grep -q '^\[fluke\] run ' $c.dry"
done

# The recipe, verbatim (SPECS.md section 2), as the effective config says it.
H=$C/happywhale.json
check "happywhale: B7 noisy-student weights, 640 px" val "$H" \
    "c['embed']['backbone'] == {'name': 'tf_efficientnet_b7', 'weights': 'tf_efficientnet_b7.ns_jft_in1k'} and c['embed']['imgsz'] == 640"
check "happywhale: DOLG on the last two stages (taps 3, 4 = stages 5 and 7)" val "$H" \
    "c['embed']['dolg']['local_tap'] == 3 and c['embed']['dolg']['global_tap'] == 4"
check "happywhale: dropout 0.2, dense 2048, ArcFace s 30 m 0.3, one centre, fixed margin" val "$H" \
    "c['embed']['neck'] == {'dropout': 0.2, 'dim': 2048} and c['embed']['head'] == {'s': 30, 'm': 0.3, 'subcenters': 1, 'dynamic': False}"
check "happywhale: Adam, cosine restarts at 3.2e-4, batch 64, flip TTA" val "$H" \
    "c['embed']['train'] == {'optimizer': 'adam', 'lr': 3.2e-4, 'schedule': 'cosine_restarts', 'batch': 64} and c['embed']['tta']['flip'] is True"
check "happywhale: 5 folds, kNN k 100 with the OOF threshold (none fixed), YOLOv5s crops" val "$H" \
    "c['folds']['k'] == 5 and c['knn'] == {'k': 100, 'per_species': False} and c['detector']['size'] == 's' and c['detector']['weights'] == 'yolov5s' and c['pipeline']['source'] == 'kaggle'"
P=$C/happywhale-plus.json
check "happywhale-plus: sub-centre k 3, dynamic margins 0.271 n^-0.364 + 0.05 at s 20.96" val "$P" \
    "c['embed']['head'] == {'s': 20.96, 'm': 0.3, 'subcenters': 3, 'dynamic': True, 'dynamic_a': 0.271, 'dynamic_b': 0.364, 'dynamic_c': 0.05}"
check "happywhale-plus: GeM p 3, 768 px, species thresholds; the rest inherited" val "$P" \
    "c['embed']['dolg']['gem_p'] == 3 and c['embed']['imgsz'] == 768 and c['knn']['per_species'] is True and c['name'] == 'happywhale-plus' and c['folds']['k'] == 5 and c['embed']['backbone']['name'] == 'tf_efficientnet_b7'"

# Local-source variants: the data on disk (which need not exist to plan), with a box file.
for v in "happy-whale-and-dolphin.zip" "hw"; do
    printf '{"extends": "%s", "name": "hwl", "pipeline": {"source": "local"}, "local": {"path": "data/%s"}, "detector": {"boxes": "boxes.csv"}}' \
        "$P" "$v" > hwl.json
    $NET $F dag hwl.json --dot > hwl.dot 2>&1; rc=$?
    check "happywhale-plus on local.path $v: dag --dot (rc=$rc)" sh -c \
        "[ $rc -eq 0 ] && grep -q '\"local\" -> \"detector_train\"' hwl.dot && grep -q '\"local\" -> \"knn\"' hwl.dot && ! grep -q '\"fetch\"' hwl.dot"
    $F dag hwl.json > hwl.txt 2>&1
    check "... local's inputs are the data on disk, the box file feeds detector and crop" sh -c \
        "grep -A5 '^local ' hwl.txt | grep -q '$T/data/$v' && grep -A4 '^detector_train ' hwl.txt | grep -q '$T/boxes.csv'"
    $NET $F status hwl.json > hwl.st 2>&1; rc=$?
    check "... status without the data names what is missing (rc=$rc)" grep -q "$T/data/$v.* does not exist" hwl.st
done
finish
