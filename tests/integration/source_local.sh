# pipeline.source "local" (issue 13, build 3) through the real fluke: the tiny preset's synth data
# copied into a Kaggle-layout folder by hand (BOM, CRLF, quoted fields, raw species typos, a
# grayscale EXIF-rotated, a CMYK and an EXIF-rotated colour JPEG) and zipped as Kaggle leaves it.
# Checks: the same submission as the synth source on the same data; the messy folder answers as
# its clean twin; its zip gives the same data digest (every downstream stage cached); a rerun
# hashes no file and, as root, opens none (the images are made unreadable to the user of the
# rerun, stat unchanged); the source is never written (read-only copy, unprivileged user,
# byte-identical afterwards); a big folder's no-op rerun hashes none of its files
# (FLUKE_LOCAL_BIG=N files, default 5000; 80000 is the real competition's count, about 4 min
# here for the first import; 0 skips it); bad inputs name the file and line and cache nothing; with
# detector.boxes in both public box formats the effnet_dolg chain gives one submission.
# sanitizer: yes (the big folder and the effnet_dolg part run in the normal build only)
. "$(dirname "$0")/_lib.sh"
F=$FLUKE
command -v zip > /dev/null || skip "zip not found (the test builds the competition-style zip with it)"
command -v python3 > /dev/null || skip "python3 not found (it writes the EXIF segment and the big folder)"
FIX=$FLUKE_SRC/tests/fixtures/image
BASE=$FLUKE_SRC/configs/baseline.json
# cfg NAME SOURCE-PATH [EXTRA-JSON]: a baseline_knn config on the local source.
cfg() { printf '{"extends": "%s", "name": "%s", "pipeline": {"source": "local"}, "local": {"path": "%s"}%s}' \
    "$BASE" "$1" "$2" "${3:-}" > "$1.json"; }
# manifest DIR: every path with its mode, size, mtime, ctime and content hash (what "never
# modified" means).
manifest() { (cd "$1" && find . -printf '%p %m %s %T@ %C@\n' | sort && find . -type f -print0 | sort -z | xargs -0 md5sum); }

# ---- the data: tiny synth, copied out of the store into a folder
printf '{"extends": "%s", "name": "syn", "synth": {"preset": "tiny"}}' "$BASE" > syn.json
$F run syn.json > syn.log 2>&1; rc=$?
check "the synth baseline runs (rc=$rc)" [ $rc -eq 0 ]
D=$(dirname "$(find .fluke/checkouts -path '*/data/train.csv' | head -1)")
mkdir clean eq var
cp -r "$D"/train.csv "$D"/sample_submission.csv "$D"/train_images "$D"/test_images clean/
cp "$D"/train_boxes.csv boxes.csv
chmod -R u+w clean boxes.csv
# The same three special JPEGs go into eq (clean CSVs) and var (messy CSVs): two train images,
# one test image. The grayscale one gets an EXIF APP1 with orientation 6 (rotate 90 degrees).
t1=$(sed -n 2p clean/train.csv | cut -d, -f1) t2=$(sed -n 3p clean/train.csv | cut -d, -f1)
s1=$(sed -n 2p clean/sample_submission.csv | cut -d, -f1)
python3 - "$FIX/gray.jpg" gray_exif6.jpg << 'EOF'
import struct, sys
b = open(sys.argv[1], 'rb').read()
assert b[:2] == b'\xff\xd8'
tiff = b'MM\x00\x2a' + struct.pack('>I', 8) + struct.pack('>H', 1) + \
       struct.pack('>HHII', 0x0112, 3, 1, 6 << 16) + struct.pack('>I', 0)
app1 = b'Exif\x00\x00' + tiff
open(sys.argv[2], 'wb').write(b[:2] + b'\xff\xe1' + struct.pack('>H', len(app1) + 2) + app1 + b[2:])
EOF
for d in eq var; do
    cp -r clean/. $d/
    cp gray_exif6.jpg $d/train_images/$t1 && cp "$FIX/cmyk.jpg" $d/train_images/$t2 && cp "$FIX/orient_6.jpg" $d/test_images/$s1
done
# var's CSVs: BOM, CRLF, every field quoted, and raw species typos of the competition: all
# killer_whale and bottlenose_dolphin rows misspelt, the synth data's pilot_whale row as globis
# (both become short_finned_pilot_whale).
nk=$(grep -c ',killer_whale,' clean/train.csv) nb=$(grep -c ',bottlenose_dolphin,' clean/train.csv)
np=$(grep -c ',pilot_whale,' clean/train.csv)
python3 - var/train.csv var/sample_submission.csv << 'EOF'
import sys
tr, ss = sys.argv[1], sys.argv[2]
rows = [l.split(',') for l in open(tr).read().splitlines()]
typo = {'killer_whale': 'kiler_whale', 'bottlenose_dolphin': 'bottlenose_dolpin', 'pilot_whale': 'globis'}
for r in rows[1:]:
    r[1] = typo.get(r[1], r[1])
open(tr, 'wb').write(b'\xef\xbb\xbf' + ''.join(','.join('"%s"' % f for f in r) + '\r\n' for r in rows).encode())
s = open(ss).read().splitlines()
open(ss, 'wb').write(b'\xef\xbb\xbf' + ''.join(l + '\r\n' for l in s).encode())
EOF
check "var's train.csv has a BOM, CRLF, quotes and typos ($nk + $nb + $np rows)" bash -c \
    "[ $nk -gt 0 ] && [ $nb -gt 0 ] && head -c 3 var/train.csv | od -An -tx1 | grep -q 'ef bb bf' && grep -q \$'\\r\$' var/train.csv &&
     grep -q '\"kiler_whale\"' var/train.csv && grep -q '\"bottlenose_dolpin\"' var/train.csv"
# Downloaded long ago: old timestamps (also keeps the stat cache's racy-clean guard out of it).
touch -d '2022-04-01 12:00' $(find clean eq var -type f)
manifest var > var.before

# ---- the clean folder answers exactly as the synth source on the same data
cfg lclean clean
$F run lclean.json > lc.log 2>&1; rc=$?
check "local on the clean folder runs (rc=$rc)" runs_exactly lc.log local baseline_knn
check "... and gives the synth source's submission, byte for byte" cmp -s out/lclean/submission.csv out/syn/submission.csv

# ---- the messy folder answers as its clean twin
cfg leq eq
cfg lvar var
$F run leq.json > leq.log 2>&1
$F run lvar.json > lv.log 2>&1; rc=$?
check "local on the messy folder runs (rc=$rc)" runs_exactly lv.log local baseline_knn
check "... logs the species typos it saw" grep -q "^\[local\] train.csv: $((nk + nb + np)) rows with a misspelt species" lv.log
check "... the baseline fixes them when reading" grep -q "train.csv: $((nk + nb + np)) species labels fixed (globis $np, pilot_whale 0, kiler_whale $nk, bottlenose_dolpin $nb)" lv.log
check "BOM/CRLF/quotes/typos change nothing: the same submission as the clean CSVs" \
    cmp -s out/lvar/submission.csv out/leq/submission.csv
check "the grayscale/CMYK/EXIF images were decoded (no bad image reported)" sh -c \
    "! grep -qi 'bad image\|cannot decode' lv.log"

# ---- the zip: same data digest, so everything downstream is a cache hit
(cd var && zip -qrX ../happy-whale-and-dolphin.zip .)
mkdir wrapped && cp -r var wrapped/hw && chmod 755 wrapped/hw/train_images/$t1 && (cd wrapped && zip -qrX ../wrapped.zip hw)
cfg lzip happy-whale-and-dolphin.zip
$F run lzip.json > lz.log 2>&1; rc=$?
check "the zip runs the local stage only (rc=$rc)" runs_exactly lz.log local
check "... baseline_knn cached: the zip's data tree is the folder's" cached lz.log baseline_knn
check "... the identical submission" cmp -s out/lzip/submission.csv out/lvar/submission.csv
cfg lwrap wrapped.zip
$F run lwrap.json > lw.log 2>&1; rc=$?
check "a zip of the folder itself (one top folder, an exec bit) gives the same tree too (rc=$rc)" \
    sh -c "grep -q '^\[fluke\] cached baseline_knn' lw.log && [ $rc -eq 0 ]"

# ---- a no-op rerun hashes nothing
$F run lvar.json > lv2.log 2>&1
check "a rerun is fully cached" all_cached lv2.log 2
check "... and hashed no image (stat cache)" sh -c \
    "grep -q 'input .*/var/train_images: 120 files, 0 hashed' lv2.log && grep -q 'input .*/var/test_images: 48 files, 0 hashed' lv2.log"
$F run lzip.json > lz2.log 2>&1
check "a zip rerun is fully cached" all_cached lz2.log 2

# ---- bad inputs: the path and line named, rc 1, nothing cached
bad_run() { # description, config name, ERE
    local rc
    $F run "$2.json" > "$2.log" 2>&1; rc=$?
    if [ $rc -eq 1 ] && grep -Eq -- "$3" "$2.log"; then ok "$1"; else
        bad "$1 (rc=$rc, want 1 and /$3/)"; sed 's/^/     /' "$2.log" | tail -3; fi
    $F status "$2.json" > "$2.st" 2>&1
    check "... nothing cached ($2)" sh -c "! grep -q '^cached   local' $2.st"
}
cfg nopath nowhere
bad_run "local.path missing: the path named" nopath "input 'train.csv': $T/nowhere/train.csv does not exist"
mkdir nocsv && cp -r clean/train_images clean/test_images clean/sample_submission.csv nocsv/
cfg nocsv nocsv
bad_run "a folder without train.csv" nocsv "$T/nocsv/train.csv does not exist"
(cd clean && zip -qr ../other.zip train_images)
cfg other other.zip
bad_run "a zip that is not the competition's" other "$T/other.zip is not the competition's data: no train.csv inside \(it holds: train_images"
mkdir badcol && cp -r clean/. badcol/ && sed -i '1s/.*/image,specie,individual_id/' badcol/train.csv
cfg badcol badcol
bad_run "train.csv with a missing column: file:line" badcol "$T/badcol/train.csv:1: missing column \"species\""
mkdir gone && cp -r clean/. gone/ && rm gone/train_images/$t2
cfg gone gone
bad_run "a listed train image that is absent: file:line" gone "$T/gone/train.csv:3: image \"$t2\" is listed but missing from $T/gone/train_images"
mkdir gonetest && cp -r clean/. gonetest/ && rm gonetest/test_images/$s1
(cd gonetest && zip -qr ../gonetest.zip .)
cfg gonetest gonetest.zip
bad_run "a test image of sample_submission.csv absent from the zip: ZIP/file:line" gonetest \
    "$T/gonetest.zip/sample_submission.csv:2: image \"$s1\" is listed but missing from $T/gonetest.zip/test_images"
head -c 20000 happy-whale-and-dolphin.zip > cut.zip && cp cut.zip cut.orig
cfg cut cut.zip
bad_run "a truncated zip is named corrupt" cut "$T/cut.zip is corrupt or truncated \(left as it is"
check "... and left as it was" cmp -s cut.zip cut.orig
printf '{"extends": "%s", "name": "unset", "pipeline": {"source": "local"}}' "$BASE" > unset.json
$F run unset.json > unset.log 2>&1; rc=$?
check "local.path unset: a plan error (rc=$rc)" sh -c "[ $rc -ne 0 ] && grep -q 'local.path is not set' unset.log"

# ---- as an unprivileged user: a read-only source, never written; a rerun that cannot read
if [ "$(id -u)" -eq 0 ] && command -v setpriv > /dev/null; then
    NR=${FLUKE_NONROOT_UID:-65534}
    W=$T/nr && mkdir -p "$W/bin" "$W/home" "$W/ro" "$W/store" "$W/store2"
    cp "$F" "$W/bin/fluke" && cp -r "$FLUKE_SRC/configs" "$W/"
    cp -r var/. "$W/ro/" && touch -d '2022-04-01 12:00' $(find "$W/ro" -type f)
    chmod -R a+rX,a-w "$W/ro"
    chown "$NR:$NR" "$W/home" "$W/store"
    chmod 755 "$T" "$W" && chmod -R a+rX "$W/bin" "$W/configs"
    as_nr() { setpriv --reuid="$NR" --regid="$NR" --clear-groups env HOME="$W/home" "$@"; }
    export -f as_nr; export NR W
    printf '{"extends": "%s/configs/baseline.json", "name": "nr", "pipeline": {"source": "local"}, "local": {"path": "%s/ro"}}' "$W" "$W" > "$W/nr.json"
    chmod a+r "$W/nr.json"
    manifest "$W/ro" > ro.before
    (cd "$W/store" && as_nr "$W/bin/fluke" run "$W/nr.json" > "$W/nr.log" 2>&1); rc=$?
    check "as uid $NR on a read-only copy: runs (rc=$rc)" sh -c "[ $rc -eq 0 ] && cmp -s $W/store/out/nr/submission.csv out/lvar/submission.csv"
    check "... that uid cannot write the source (so nothing needed to)" bash -c "! as_nr touch $W/ro/x 2>/dev/null"
    manifest "$W/ro" > ro.after
    check "... the source is byte-identical afterwards (names, modes, sizes, times, contents)" cmp -s ro.before ro.after
    # Unreadable-but-same-stat: images 0400 root's, hashed by a root run; the rerun as NR can
    # stat them (same dev, ino, size, mtime, ctime) but open none, so it succeeds only if the
    # stat cache vouched for every one.
    U=$W/unread && cp -r var "$U" && touch -d '2022-04-01 12:00' $(find "$U" -type f)
    chmod 0400 "$U"/train_images/* "$U"/test_images/* && chmod a+r "$U"/*.csv && chmod -R a+X "$U"
    printf '{"extends": "%s/configs/baseline.json", "name": "un", "pipeline": {"source": "local"}, "local": {"path": "%s"}}' "$W" "$U" > "$W/un.json"
    chmod a+r "$W/un.json"
    (cd "$W/store2" && "$W/bin/fluke" run "$W/un.json" > "$W/un1.log" 2>&1); rc=$?
    check "root's first run over the 0400 images (rc=$rc)" [ $rc -eq 0 ]
    chown -R "$NR:$NR" "$W/store2"
    check "uid $NR cannot read those images" bash -c "! as_nr cat $U/train_images/$t1 > /dev/null 2>&1"
    (cd "$W/store2" && as_nr "$W/bin/fluke" run "$W/un.json" > "$W/un2.log" 2>&1); rc=$?
    check "... yet its rerun succeeds, all cached: not one image was opened (rc=$rc)" all_cached "$W/un2.log" 2
else
    echo "     (not root or no setpriv: the read-only / unreadable-rerun checks are left out)"
fi

# ---- a big folder (FLUKE_LOCAL_BIG files): the no-op rerun reads none
SAN=0
grep -qa __asan_init "$FLUKE_TS" && SAN=1
BIG=${FLUKE_LOCAL_BIG:-$((SAN ? 0 : 5000))} # slow inputs run once, in the normal build
if [ "$BIG" -gt 0 ]; then
    python3 - "$BIG" "$FIX/photo.jpg" big << 'EOF'
import os, sys
n, src, d = int(sys.argv[1]), open(sys.argv[2], 'rb').read(), sys.argv[3]
ntr = n * 51033 // 78989  # the competition's train/test split
os.makedirs(d + '/train_images'); os.makedirs(d + '/test_images')
with open(d + '/train.csv', 'w') as f:
    f.write('image,species,individual_id\n')
    for i in range(ntr):
        name = '%014x.jpg' % i
        open('%s/train_images/%s' % (d, name), 'wb').write(src)
        f.write('%s,beluga,%012x\n' % (name, i // 3))
with open(d + '/sample_submission.csv', 'w') as f:
    f.write('image,predictions\n')
    for i in range(ntr, n):
        name = '%014x.jpg' % i
        open('%s/test_images/%s' % (d, name), 'wb').write(src)
        f.write('%s,new_individual\n' % name)
EOF
    touch -d '2022-04-01 12:00' big/train.csv big/sample_submission.csv
    find big -type f -print0 | xargs -0 touch -d '2022-04-01 12:00'
    cfg lbig big
    t0=$(date +%s.%N)
    $F run lbig.json --until local > big1.log 2>&1; rc=$?
    t1=$(date +%s.%N)
    check "a $BIG-file folder imports (rc=$rc, $(printf %.1f "$(echo "$t1 - $t0" | bc)") s)" ran big1.log local
    t0=$(date +%s.%N)
    $F run lbig.json --until local > big2.log 2>&1
    t1=$(date +%s.%N)
    check "... its no-op rerun is cached ($(printf %.2f "$(echo "$t1 - $t0" | bc)") s)" all_cached big2.log 1
    check "... and hashed none of its files" sh -c \
        "grep -Eq 'input .*/big/train_images: [0-9]+ files, 0 hashed' big2.log && grep -Eq 'input .*/big/test_images: [0-9]+ files, 0 hashed' big2.log &&
         [ \$(sed -n 's/.*big\/t[a-z]*_images: \([0-9]*\) files.*/\1/p' big2.log | paste -sd+ | bc) -eq $BIG ]"
fi

# ---- effnet_dolg with detector.boxes in both public formats (normal build only)
if [ $SAN -eq 1 ]; then
    echo "     (sanitizer build: the effnet_dolg part is left to the normal build)"
else
    # the `box` format: image,box with "x1 y1 x2 y2" (the first box of each bbox row)
    sed -n '1!p' boxes.csv | sed 's/^\([^,]*\),\[\[\([0-9. ]*\)\].*$/\1,\2/' | { echo image,box; cat; } > boxes_box.csv
    mk() { printf '{"extends": "%s/configs/tiny.json", "name": "%s", "pipeline": {"source": "local"}, "local": {"path": "%s"}, "detector": {"boxes": "%s"}}' \
        "$FLUKE_SRC" "$1" "$2" "$3" > "$1.json"; }
    mk ef var boxes.csv
    $F run ef.json > ef.log 2>&1; rc=$?
    check "effnet_dolg on the local folder with detector.boxes runs to a submission (rc=$rc)" sh -c \
        "[ $rc -eq 0 ] && head -1 out/ef/submission.csv | grep -q '^image,predictions' && [ \$(wc -l < out/ef/submission.csv) -eq 49 ]"
    check "... the box file is an input of detector_train and crop" sh -c "$F dag ef.json | grep -A3 '^crop ' | grep -q 'boxes'"
    mk efz happy-whale-and-dolphin.zip boxes.csv
    $F run efz.json > efz.log 2>&1; rc=$?
    n=$(sed -n 's/^\[fluke\] \([0-9]*\) stages:.*/\1/p' ef.log)
    check "... the zip (its local stage already ran above): all $n stages cached" all_cached efz.log "$n"
    check "... the identical submission" cmp -s out/efz/submission.csv out/ef/submission.csv
    mk efb var boxes_box.csv
    $F run efb.json > efb.log 2>&1; rc=$?
    check "... the 'box' column format gives the same submission (rc=$rc)" cmp -s out/efb/submission.csv out/ef/submission.csv
fi
manifest var > var.after
check "after every run above (as root too), the messy folder is byte-identical" cmp -s var.before var.after
finish
