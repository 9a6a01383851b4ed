# The backend seam at grep level: an op file (runtime/ops/*.c, *.h) defines an op (name, shape
# rule, flags, id) and its plain reference kernels, and never names a backend. Backends reach
# the kernels only through their op tables (runtime/cpu/backend_cpu.c, runtime/cuda/...), so
# adding one touches no op file. Fails on, anywhere in an op file (comments too):
#   cuda / cudnn / cublas / nvcc / __global__ (any case), FL_BACKEND_, fl_backend, backend_cpu,
#   backend_cuda, backend_internal.h;
# and in code (comments stripped): the word cpu in any case, except in an #include of
# runtime/cpu/ (the reference kernels' own helpers: conv and pool loops), and the interface's
# fields and look-ups: ->be, ->rec, ->ops[, impl[, fl_node_impl.
# Set LINT_OPS_DIR to lint another folder (used to show that a broken variant is caught).
# sanitizer: yes
set -u
: "${FLUKE_SRC:?run through tests/run.sh (FLUKE_SRC unset)}"
dir=${LINT_OPS_DIR:-$FLUKE_SRC/runtime/ops}
found=0 files=0
for f in "$dir"/*.c "$dir"/*.h; do
    [ -f "$f" ] || continue
    files=$((files + 1))
    out=$(awk -v file="$(basename "$f")" '
    {
        line = $0
        low = tolower(line)
        if (low ~ /cuda|cudnn|cublas|nvcc|__global__/ || line ~ /FL_BACKEND_|fl_backend|backend_cpu|backend_cuda|backend_internal\.h/)
            printf "%s:%d: names a backend: %s\n", file, NR, line
        # strip comments (block comments may span lines) and string literals, keep the code
        code = ""
        s = line
        while (length(s) > 0) {
            if (incomment) {
                i = index(s, "*/")
                if (i == 0) { s = ""; break }
                s = substr(s, i + 2); incomment = 0; continue
            }
            i = index(s, "/*"); j = index(s, "//")
            if (j > 0 && (i == 0 || j < i)) { code = code substr(s, 1, j - 1); s = ""; break }
            if (i == 0) { code = code s; s = ""; break }
            code = code substr(s, 1, i - 1); s = substr(s, i + 2); incomment = 1
        }
        if (code ~ /^[ \t]*#[ \t]*include[ \t]+"runtime\/cpu\/[a-z_]+\.h"/) next
        gsub(/"([^"\\]|\\.)*"/, "\"\"", code)
        lc = tolower(code)
        if (lc ~ /(^|[^a-z0-9])cpu([^a-z0-9]|$)|_cpu|cpu_/)
            printf "%s:%d: names the cpu backend in code: %s\n", file, NR, line
        if (code ~ /->be([^a-zA-Z0-9_]|$)|->rec([^a-zA-Z0-9_]|$)|->ops\[|impl\[|fl_node_impl/)
            printf "%s:%d: reaches a backend other than through its table: %s\n", file, NR, line
    }' "$f")
    if [ -n "$out" ]; then
        echo "$out"
        found=$((found + 1))
    fi
done
if [ "$files" -eq 0 ]; then
    echo "no op files in $dir"
    exit 1
fi
if [ "$found" -eq 0 ]; then
    echo "all passed: $files op files in $dir name no backend"
else
    echo "$found op files name a backend"
    exit 1
fi
