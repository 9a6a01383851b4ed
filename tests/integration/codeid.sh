# Code identity: a stage's id changes when a source that builds it changes (its own file, or
# any file of a module it includes), and not when an unrelated module or another stage changes.
. "$(dirname "$0")/_lib.sh"
GEN=$(dirname "$FLUKE")/codeid_gen
mkdir -p stages/api runtime/cpu kaggle
printf '#include "stages/api/stage.h"\n#include "runtime/rt.h"\nint a;\n' > stages/a.c
printf '#include "stages/api/stage.h"\nint b;\n' > stages/b.c
printf 'struct s;\n' > stages/api/stage.h
printf '#include "runtime/cpu/k.h"\nint rt(void);\n' > runtime/rt.h
printf 'int rt(void) { return 1; }\n' > runtime/rt.c
printf 'int k(void);\n' > runtime/cpu/k.h
printf 'int k(void) { return 2; }\n' > runtime/cpu/k.c
printf 'int y;\n' > kaggle/y.c
id() { "$GEN" . stages/a.c; }
i0=$(id)
check "an id is 32 hex digits" sh -c "echo $i0 | grep -Eq '^[0-9a-f]{32}$'"
check "the id is stable" [ "$(id)" = "$i0" ]
echo "int unrelated;" >> kaggle/y.c
check "an unrelated module does not change it" [ "$(id)" = "$i0" ]
echo "int other;" >> stages/b.c
check "another stage does not change it" [ "$(id)" = "$i0" ]
echo "int c;" >> stages/a.c
i1=$(id)
check "its own source changes it" [ "$i1" != "$i0" ]
echo "/* tweak */" >> runtime/cpu/k.c
i2=$(id)
check "a .c file of an included module (subfolder) changes it" [ "$i2" != "$i1" ]
echo "/* tweak */" >> stages/api/stage.h
check "the stage API header changes it" [ "$(id)" != "$i2" ]
"$GEN" . stages/missing.c > /dev/null 2>&1; rc=$?
check "a missing stage file is an error" [ $rc -ne 0 ]
finish
