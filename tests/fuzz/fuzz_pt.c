/* Fuzz target for the safe torch.save reader (runtime/torch_pt.h).
 *
 *   libFuzzer:  `make fuzz` (every target for FUZZ_TIME s) or `make fuzz-libfuzzer` (build only).
 *   plain:      built with cc in every test run: a main() that runs each file named on the
 *               command line through the target (tests/integration/fuzz_corpus.sh replays
 *               tests/fuzz/corpus/fuzz_pt/).
 *
 * The first byte picks the form (mod 2): 0 the rest is a whole file (zip container, legacy
 * detection, CRC checks); 1 the rest is u16 k, k u32 storage sizes (bytes, capped) and a
 * data.pkl, wrapped in a valid archive with storages data/0 .. data/k-1 (so mutations reach the
 * unpickler instead of failing the CRC). Seeds: tests/fixtures/gen_pt.py --fuzz-seeds.
 * Beyond "does not crash": a rejection names the input, and an accepted state dict keeps the
 * reader's promises (tensors, unique non-empty names, numel = product of the shape, finite
 * bookkeeping) and round-trips through the safetensors writer and reader unchanged. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/safetensors.h"
#include "runtime/torch_pt.h"
#include "tests/fuzz/fuzz_main.h"
#include "tests/fuzz/fuzz_pt_zip.h"

#define MAX_STORAGES 1024
#define MAX_STORAGE_BYTES ((size_t)1 << 18) /* all storages together: the yolo seed needs 147 KB   \
                                             */

static int fz_pt_accepted; /* inputs accepted so far (the unit test's view) */

static void fz_check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_pt: broken invariant: %s\n", what);
        abort();
    }
}

static void check_accepted(const fl_pt_file *f) {
    fl_err e;
    fz_check(f->n > 0 && f->where && f->where[0], "an accepted file has tensors and says where");
    fl_st_entry *ent = calloc(f->n, sizeof *ent);
    fz_check(ent != NULL, "allocation");
    for (size_t i = 0; i < f->n; i++) {
        const fl_pt_tensor *t = &f->t[i];
        size_t numel = 1;
        fz_check(t->ndim >= 0 && t->ndim <= FL_MAX_DIMS, "ndim in range");
        for (int d = 0; d < t->ndim; d++) {
            fz_check(t->shape[d] >= 0, "sizes are non-negative");
            numel *= (size_t)t->shape[d];
        }
        fz_check(numel == t->numel, "numel is the product of the shape");
        fz_check(t->name[0] != 0 && fl_pt_find(f, t->name) == t, "names are unique and non-empty");
        fz_check(t->src_dtype && t->src_dtype[0] != '?', "a known source dtype");
        ent[i] = (fl_st_entry){t->name, FL_ST_F32, t->ndim, t->shape, t->data};
    }
    size_t len = 0;
    unsigned char *img = fl_st_serialize(ent, f->n, NULL, 0, &len, &e);
    if (img) { /* a key like "__metadata__" is the writer's to refuse */
        fl_st_file *g = fl_st_parse(img, len, "fuzz-converted", &e);
        if (!g) fprintf(stderr, "fuzz_pt: %s\n", e.msg);
        fz_check(g != NULL && g->n == f->n, "the converted file parses with every tensor");
        for (size_t i = 0; i < f->n; i++) {
            const fl_st_tensor *b = fl_st_find(g, f->t[i].name);
            fz_check(b && b->numel == f->t[i].numel && b->dtype == FL_ST_F32,
                     "conversion keeps each tensor");
            fz_check(!b->numel || memcmp(b->data, f->t[i].data, b->numel * 4) == 0,
                     "conversion keeps data");
        }
        fl_st_close(g);
        free(img);
    }
    free(ent);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    fl_err e = {{0}};
    fl_pt_file *f = NULL;
    const char *label = "fuzz.pt";
    if (data[0] % 2 == 0) {
        f = fl_pt_parse(data + 1, size - 1, label, &e);
    } else {
        if (size < 3) return 0;
        size_t k = (size_t)(data[1] | data[2] << 8) % (MAX_STORAGES + 1), at = 3, total = 0;
        if (size < at + 4 * k) return 0;
        fz_zent *v = calloc(k + 2, sizeof *v);
        char(*names)[32] = calloc(k + 1, sizeof *names);
        unsigned char **bufs = calloc(k + 1, sizeof *bufs);
        fz_check(v && names && bufs, "allocation");
        v[0] = (fz_zent){"archive/version", "3\n", 2};
        for (size_t i = 0; i < k; i++, at += 4) {
            size_t sz = (size_t)data[at] | (size_t)data[at + 1] << 8 | (size_t)data[at + 2] << 16 |
                        (size_t)data[at + 3] << 24;
            if (sz > MAX_STORAGE_BYTES - total) sz = MAX_STORAGE_BYTES - total;
            total += sz;
            bufs[i] = malloc(sz ? sz : 1);
            fz_check(bufs[i] != NULL, "allocation");
            for (size_t j = 0; j < sz; j++)
                bufs[i][j] = (unsigned char)(j * 37 + i * 11 + 5);
            snprintf(names[i], sizeof names[i], "archive/data/%zu", i);
            v[i + 1] = (fz_zent){names[i], bufs[i], sz};
        }
        v[k + 1] = (fz_zent){"archive/data.pkl", data + at, size - at};
        size_t zl;
        unsigned char *z = fz_make_zip(v, (int)k + 2, &zl);
        fz_check(z != NULL, "allocation");
        f = fl_pt_parse(z, zl, label, &e);
        free(z);
        for (size_t i = 0; i < k; i++)
            free(bufs[i]);
        free(bufs);
        free(names);
        free(v);
    }
    if (!f) {
        fz_check(e.msg[0] != 0, "a rejected input has an error message");
        fz_check(strncmp(e.msg, label, strlen(label)) == 0, "the error names the file");
        return 0;
    }
    check_accepted(f);
    fz_pt_accepted++;
    fl_pt_close(f);
    return 0;
}
