/* safetensors files (SPECS.md section 7): reading with full validation, writing, sharded
 * model.safetensors.index.json sets, and loading into named float32 arrays by name with
 * PyTorch load_state_dict-style strictness.
 *
 * Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}}
 * (optionally space-padded), then the raw little-endian data. Offsets are relative to the data
 * start and cover it contiguously. Tensor data may be unaligned inside the file: every access goes
 * through memcpy (fl_st_to_f32), never a cast of the pointer.
 *
 * Errors name the file and the tensor, e.g.
 *   "x.safetensors: tensor 'blocks.0.bn1.weight': data_offsets [0, 12] but F32 [4] needs 16 bytes" */
#ifndef FLUKE_SAFETENSORS_H
#define FLUKE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "artifacts/util.h"
#include "runtime/param.h"

/* Largest header accepted (the reference implementation's limit). */
#define FL_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

typedef enum fl_st_dtype {
    FL_ST_BOOL,
    FL_ST_U8,
    FL_ST_I8,
    FL_ST_I16,
    FL_ST_U16,
    FL_ST_F16,
    FL_ST_BF16,
    FL_ST_I32,
    FL_ST_U32,
    FL_ST_F32,
    FL_ST_F64,
    FL_ST_I64,
    FL_ST_U64,
    FL_ST_F8_E4M3,
    FL_ST_F8_E5M2,
    FL_ST_NDTYPES
} fl_st_dtype;

/* "F32" etc.; "?" for an out-of-range value. */
const char *fl_st_dtype_name(fl_st_dtype d);
/* Bytes per element (BOOL and F8 kinds: 1). */
size_t fl_st_dtype_size(fl_st_dtype d);
/* Parses "F32" etc.; -1 when unknown. */
int fl_st_dtype_parse(const char *s);

typedef struct fl_st_tensor {
    char *name;
    fl_st_dtype dtype;
    int ndim;                     /* 0 for a scalar; at most FL_MAX_DIMS */
    int64_t shape[FL_MAX_DIMS];
    size_t numel;                 /* product of shape (1 for a scalar) */
    size_t begin, end;            /* data_offsets, relative to the data start */
    const unsigned char *data;    /* file bytes of this tensor; possibly unaligned */
} fl_st_tensor;

typedef struct fl_st_kv {
    char *key;
    char *val;
} fl_st_kv;

/* One parsed file. Owns its bytes; tensors are in header order. */
typedef struct fl_st_file {
    char *path;                   /* label used in error messages */
    unsigned char *buf;           /* the whole file */
    size_t len;
    size_t data_start;            /* 8 + N */
    fl_st_tensor *t;
    size_t n;
    fl_st_kv *meta;               /* __metadata__, in header order */
    size_t nmeta;
} fl_st_file;

/* Reads and validates a file. NULL with the reason in e. */
fl_st_file *fl_st_open(const char *path, fl_err *e);
/* Validates an in-memory image (copied); label names it in errors. The fuzz target's entry. */
fl_st_file *fl_st_parse(const void *buf, size_t len, const char *label, fl_err *e);
void fl_st_close(fl_st_file *f);

/* The tensor with this name, or NULL. */
const fl_st_tensor *fl_st_find(const fl_st_file *f, const char *name);
/* The __metadata__ value for key, or NULL. */
const char *fl_st_meta(const fl_st_file *f, const char *key);

/* 1 when fl_st_to_f32 converts this dtype (every float and integer kind; not the float8s). */
int fl_st_f32_convertible(int dtype);
/* Converts a tensor of a float or integer dtype to float32 (round to nearest even for F64 and
 * wide integers). n must equal t->numel. Float8 dtypes are an error naming the tensor. */
int fl_st_to_f32(const fl_st_file *f, const fl_st_tensor *t, float *out, size_t n, fl_err *e);
/* Same, into a fresh malloc'd array; *numel (may be NULL) gets the count. */
float *fl_st_read_f32(const fl_st_file *f, const char *name, size_t *numel, fl_err *e);

/* ---- writing ---- */

/* One array to write: numel(shape) * dtype size bytes at data (any alignment). */
typedef struct fl_st_entry {
    const char *name;
    fl_st_dtype dtype;
    int ndim;
    const int64_t *shape;         /* ndim values; may be NULL when ndim == 0 */
    const void *data;
} fl_st_entry;

/* Writes entries (in the given order, data contiguous) and metadata (may be NULL/0) to path:
 * header space-padded to a multiple of 8, via a temporary file, fsync and rename. Duplicate or
 * empty names and a name "__metadata__" are errors. */
int fl_st_write(const char *path, const fl_st_entry *v, size_t n, const fl_st_kv *meta,
                size_t nmeta, fl_err *e);
/* The same image in memory (malloc'd, *len gets the size); what fl_st_write puts on disk. */
unsigned char *fl_st_serialize(const fl_st_entry *v, size_t n, const fl_st_kv *meta, size_t nmeta,
                               size_t *len, fl_err *e);
/* Writes every entry of a parameter list (parameters and buffers) as F32 under its name. */
int fl_st_write_params(const char *path, const fl_param_list *pl, const fl_st_kv *meta,
                       size_t nmeta, fl_err *e);

/* ---- sets of files (single file or sharded index) ---- */

typedef struct fl_st_set {
    char *path;                   /* the file or index given to fl_st_open_set */
    fl_st_file **files;
    size_t nfiles;
} fl_st_set;

/* path is either a .safetensors file or a model.safetensors.index.json whose weight_map names
 * shards relative to the index's directory. Every weight_map entry must exist in its shard and
 * every shard tensor must be listed in the weight_map. */
fl_st_set *fl_st_open_set(const char *path, fl_err *e);
void fl_st_close_set(fl_st_set *s);
/* The tensor with this name in any file of the set (and its file in *file, may be NULL). */
const fl_st_tensor *fl_st_set_find(const fl_st_set *s, const char *name, const fl_st_file **file);

/* ---- loading by name ---- */

/* A float32 destination: shape is PyTorch's. */
typedef struct fl_st_target {
    const char *name;
    float *data;
    int ndim;
    const int64_t *shape;
} fl_st_target;

enum {
    FL_ST_STRICT = 0,        /* like load_state_dict(strict=True): any mismatch is an error */
    FL_ST_NONSTRICT = 1,     /* missing/unexpected keys become warnings; wrong shapes still error */
};

/* Copies every target from the set by name (converting F16/BF16/F64 to F32). Collects ALL missing
 * keys, unexpected keys (tensors in the files that no target names; those starting with
 * ignore_prefix, if given, are skipped) and mis-shaped keys before failing, and lists them in one
 * error. In FL_ST_NONSTRICT mode missing and unexpected keys are reported in *warnings (a
 * malloc'd string, NULL when there is nothing to report; warnings may be NULL) and the rest
 * loads; a shape or dtype mismatch is an error in both modes, as in PyTorch. Nothing is written
 * to any target unless the call succeeds. */
int fl_st_load(const fl_st_set *s, const fl_st_target *tg, size_t n, int mode,
               const char *ignore_prefix, char **warnings, fl_err *e);
/* fl_st_load for every entry of a parameter list (parameters and buffers). */
int fl_st_load_params(const fl_st_set *s, fl_param_list *pl, int mode, char **warnings,
                      fl_err *e);

#endif
