/* Internals of the PyTorch checkpoint reader (runtime/torch_pt.h): the zip container
 * (torch_pt_zip.c) and the restricted unpickler (torch_pt_pickle.c), shared with torch_pt.c. */
#ifndef FLUKE_TORCH_PT_INTERNAL_H
#define FLUKE_TORCH_PT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "artifacts/util.h"
#include "runtime/param.h"
#include "runtime/safetensors.h"

/* ---- zip (torch's PyTorchStreamWriter output: STORED entries, optional zip64) ------------ */

typedef struct fl_ptz_entry {
    char *name;
    size_t off, len; /* the entry's data inside the file */
} fl_ptz_entry;

typedef struct fl_ptz {
    const unsigned char *buf; /* not owned */
    size_t len;
    fl_ptz_entry *v;
    size_t n;
    char *prefix; /* "archive" in "archive/data.pkl" */
} fl_ptz;

/* Parses the central directory of buf (CRC-checked, bounds-checked, STORED only) and finds the
 * archive prefix holding data.pkl. Messages start with label. */
int fl_ptz_open(fl_ptz *z, const unsigned char *buf, size_t len, const char *label, fl_err *e);
/* The entry <prefix>/<rel>, or NULL. */
const fl_ptz_entry *fl_ptz_find(const fl_ptz *z, const char *rel);
void fl_ptz_free(fl_ptz *z);

/* ---- pickle values ------------------------------------------------------------------------ */

typedef enum fl_pv_kind {
    FL_PV_NONE,
    FL_PV_BOOL,
    FL_PV_INT,
    FL_PV_FLOAT,
    FL_PV_STR, /* unicode (and protocol-2 py2 str) */
    FL_PV_BYTES,
    FL_PV_TUPLE,
    FL_PV_LIST,
    FL_PV_DICT, /* dict and collections.OrderedDict: items = key, value, key, value ... */
    FL_PV_SET,
    FL_PV_GLOBAL,  /* an opaque (module, name) */
    FL_PV_OBJ,     /* an opaque call result: callable, args, BUILD state, appended items */
    FL_PV_STORAGE, /* a persistent id resolved to data/<key> */
    FL_PV_TENSOR,
} fl_pv_kind;

typedef struct fl_pv fl_pv;

typedef struct fl_pv_storage {
    fl_st_dtype dtype;
    const unsigned char *data; /* inside the zip buffer */
    size_t numel;
    char key[64];
} fl_pv_storage;

typedef struct fl_pv_tensor {
    const fl_pv *storage;
    int64_t offset;
    int ndim;
    int64_t size[FL_MAX_DIMS], stride[FL_MAX_DIMS];
} fl_pv_tensor;

struct fl_pv {
    fl_pv_kind kind;
    union {
        int64_t i; /* BOOL, INT */
        double f;  /* FLOAT */
        struct {   /* STR, BYTES: NUL-terminated copy */
            char *s;
            size_t len;
        } str;
        struct { /* TUPLE, LIST, DICT, SET, OBJ (appended items) */
            fl_pv **v;
            size_t n, cap;
        } seq;
        fl_pv_storage *storage;
        fl_pv_tensor *tensor;
    } u;
    /* GLOBAL: mod/name; OBJ: callable, args, state */
    char *mod, *name;
    fl_pv *callable, *args, *state;
};

typedef struct fl_pk_limits {
    size_t max_objects, max_memo, max_stack, max_marks, max_str;
} fl_pk_limits;

/* The pool of values of one load (freed together, so shared and cyclic references are fine). */
typedef struct fl_pk {
    fl_pv **all;
    size_t nall, cap;
    fl_pk_limits lim;
} fl_pk;

/* Runs data.pkl (pkl, len bytes) on the restricted VM; storages resolve against z. Returns the
 * root value (owned by vm), NULL with "label: data.pkl offset N: OPCODE: why" in e. */
fl_pv *fl_pk_load(fl_pk *vm, const unsigned char *pkl, size_t len, const fl_ptz *z,
                  const char *label, fl_err *e);
void fl_pk_free(fl_pk *vm);

/* The pickletools name of an opcode, NULL for a byte that is none. */
const char *fl_pk_op_name(unsigned char op);
/* 1 when s is strict UTF-8 as Python decodes it (no overlongs, surrogates, > U+10FFFF). */
int fl_pk_utf8_ok(const unsigned char *s, size_t n);

/* Lookups on values. dict_get: the last item whose key is the string k (Python's overwrite). */
const fl_pv *fl_pv_dict_get(const fl_pv *d, const char *k);
int fl_pv_is_global(const fl_pv *g, const char *mod, const char *name);
/* "dict", "tensor", "models.yolo.DetectionModel object", ... for messages (buf >= 128). */
const char *fl_pv_describe(const fl_pv *v, char *buf, size_t cap);

#endif
