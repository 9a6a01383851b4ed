/* Fuzz target for the safetensors reader.
 *
 *   libFuzzer:  clang -std=c11 -D_GNU_SOURCE -I. -DFL_FUZZ_LIBFUZZER -fsanitize=fuzzer,address,undefined \
 *                 tests/fuzz/fuzz_safetensors.c runtime/safetensors*.c artifacts/util.c -lcjson -lm
 *   plain:      the same without -DFL_FUZZ_LIBFUZZER and -fsanitize=fuzzer gives a main() that runs
 *               every file named on the command line through the target (a regression corpus).
 *   unit test:  tests/unit/test_safetensors_fuzz.c includes this file with FL_FUZZ_NO_MAIN.
 *
 * Beyond "does not crash", every accepted input must satisfy the reader's promises: tensors lie
 * inside the file and cover the data exactly, F32-convertible tensors convert, and writing the
 * parsed table back out gives a file that parses to the same table. A violated promise aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/safetensors.h"

static void fz_check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_safetensors: broken invariant: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fl_err e = {{0}};
    fl_st_file *f = fl_st_parse(data, size, "fuzz.safetensors", &e);
    if (!f) {
        fz_check(e.msg[0] != 0, "a rejected input has an error message");
        fz_check(strncmp(e.msg, "fuzz.safetensors", 16) == 0, "the error names the file");
        return 0;
    }
    size_t covered = 0;
    fl_st_entry *ent = calloc(f->n ? f->n : 1, sizeof *ent);
    fz_check(ent != NULL, "allocation");
    for (size_t i = 0; i < f->n; i++) {
        const fl_st_tensor *t = &f->t[i];
        fz_check(t->begin <= t->end && t->end <= f->len - f->data_start, "tensor inside the file");
        fz_check(t->end - t->begin == t->numel * fl_st_dtype_size(t->dtype), "size matches dtype");
        covered += t->end - t->begin;
        fz_check(fl_st_find(f, t->name) == t, "names are unique");
        if (t->numel <= (1u << 20)) {
            float *out = malloc(t->numel ? t->numel * sizeof *out : 1);
            fz_check(out != NULL, "allocation");
            int rc = fl_st_to_f32(f, t, out, t->numel, &e);
            int conv = fl_st_f32_convertible(t->dtype);
            fz_check((rc == 0) == conv, "exactly the convertible dtypes convert");
            free(out);
        }
        ent[i] = (fl_st_entry){t->name, t->dtype, t->ndim, t->shape, t->data};
    }
    fz_check(covered == f->len - f->data_start, "tensors cover the data exactly");
    /* loading by name: every float tensor into a buffer of its own shape; the rest are
     * "unexpected", which non-strict loading must tolerate and strict loading must refuse */
    fl_st_set set = {f->path, &f, 1};
    fl_st_target *tg = calloc(f->n ? f->n : 1, sizeof *tg);
    float *dst = NULL;
    size_t ntg = 0, total = 0, nother = 0;
    for (size_t i = 0; i < f->n; i++) {
        fl_st_dtype d = f->t[i].dtype;
        if (d == FL_ST_F32 || d == FL_ST_F16 || d == FL_ST_BF16 || d == FL_ST_F64) total += f->t[i].numel;
        else nother++;
    }
    if (tg && total <= (1u << 20) && (dst = malloc(total ? total * sizeof *dst : 1))) {
        size_t off = 0;
        for (size_t i = 0; i < f->n; i++) {
            const fl_st_tensor *t = &f->t[i];
            if (t->dtype != FL_ST_F32 && t->dtype != FL_ST_F16 && t->dtype != FL_ST_BF16 &&
                t->dtype != FL_ST_F64)
                continue;
            tg[ntg++] = (fl_st_target){t->name, dst + off, t->ndim, t->shape};
            off += t->numel;
        }
        char *warn = NULL;
        int rc = fl_st_load(&set, tg, ntg, FL_ST_NONSTRICT, NULL, &warn, &e);
        fz_check(rc == 0 && (warn != NULL) == (nother > 0), "non-strict load of a valid file");
        free(warn);
        rc = fl_st_load(&set, tg, ntg, FL_ST_STRICT, NULL, NULL, &e);
        fz_check((rc == 0) == (nother == 0), "strict load fails exactly on unexpected tensors");
    }
    free(dst);
    free(tg);
    size_t len = 0;
    unsigned char *img = fl_st_serialize(ent, f->n, f->meta, f->nmeta, &len, &e);
    fz_check(img != NULL, "an accepted table can be written back");
    fl_st_file *g = fl_st_parse(img, len, "fuzz-rewritten", &e);
    fz_check(g != NULL, "the rewritten file parses");
    fz_check(g->n == f->n && g->nmeta == f->nmeta, "the rewrite keeps every entry");
    for (size_t i = 0; i < f->n; i++) {
        const fl_st_tensor *a = &f->t[i], *b = fl_st_find(g, a->name);
        fz_check(b && b->dtype == a->dtype && b->ndim == a->ndim && b->numel == a->numel,
                 "the rewrite keeps each tensor");
        fz_check(memcmp(a->shape, b->shape, sizeof a->shape[0] * (size_t)a->ndim) == 0,
                 "the rewrite keeps shapes");
        fz_check(a->end == a->begin || memcmp(a->data, b->data, a->end - a->begin) == 0,
                 "the rewrite keeps data");
    }
    for (size_t i = 0; i < f->nmeta; i++) {
        const char *v = fl_st_meta(g, f->meta[i].key);
        fz_check(v && strcmp(v, f->meta[i].val) == 0, "the rewrite keeps metadata");
    }
    fl_st_close(g);
    free(img);
    free(ent);
    fl_st_close(f);
    return 0;
}

#if !defined(FL_FUZZ_LIBFUZZER) && !defined(FL_FUZZ_NO_MAIN)
int main(int argc, char **argv) {
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        fl_err e;
        size_t len = 0;
        char *buf = fl_read_file(argv[i], &len, &e);
        if (!buf) {
            fprintf(stderr, "%s\n", e.msg);
            bad = 1;
            continue;
        }
        LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
        free(buf);
    }
    printf("fuzz_safetensors: %d input(s) ran\n", argc - 1);
    return bad;
}
#endif
