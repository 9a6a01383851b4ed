/* Tensors: element types, shapes and strided views. Activations are NHWC (channels last), so the
 * last axis of a 4-d tensor is C; a 1x1 convolution is then one GEMM and channel-wise ops (batch
 * norm, PReLU, squeeze-excite gating) broadcast over the trailing axis.
 *
 * A shape has 0..FL_MAX_DIMS axes (0 = a scalar with one element). Strides are in elements. */
#ifndef FLUKE_TENSOR_H
#define FLUKE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "artifacts/util.h"
#include "runtime/param.h"

typedef enum fl_dtype {
    FL_F32 = 0,
    FL_F64 = 1, /* the double-precision reference path (finite-difference tests) */
    FL_I32 = 2, /* class labels */
    /* Low-precision storage (runtime/cpu/lowp.h): bfloat16 (8 exponent bits, 8-bit significand,
     * u = 2^-8) and IEEE binary16 (5 exponent bits, 11-bit significand, u = 2^-11), both
     * rounded to nearest even from float32. Only casts and the matrix ops (linear, conv2d)
     * take them; products are formed exactly in float32 and accumulated in float32. */
    FL_BF16 = 3,
    FL_F16 = 4,
} fl_dtype;

/* 1 for FL_BF16 / FL_F16. */
static inline int fl_dtype_is_lowp(fl_dtype t) { return t == FL_BF16 || t == FL_F16; }

size_t fl_dtype_size(fl_dtype t);
const char *fl_dtype_name(fl_dtype t);

typedef struct fl_shape {
    int ndim;
    int64_t d[FL_MAX_DIMS];
} fl_shape;

/* A view: data + shape + element strides. Contiguous row-major unless made otherwise. */
typedef struct fl_tensor {
    fl_dtype dtype;
    fl_shape shape;
    int64_t stride[FL_MAX_DIMS];
    void *data;
} fl_tensor;

/* Fills s from ndim sizes; -1 with a message when ndim is out of range or a size is < 1 or the
 * element count overflows. */
int fl_shape_make(fl_shape *s, int ndim, const int64_t *d, fl_err *e);
int64_t fl_shape_numel(const fl_shape *s);
int fl_shape_eq(const fl_shape *a, const fl_shape *b);
/* "[2,3,4]" into buf (always NUL-terminated); returns buf. */
char *fl_shape_str(const fl_shape *s, char *buf, size_t cap);
/* NumPy broadcasting (axes aligned on the right; a size-1 axis stretches). */
int fl_shape_broadcast(const fl_shape *a, const fl_shape *b, fl_shape *out, fl_err *e);
/* Row-major strides of s into st. */
void fl_shape_strides(const fl_shape *s, int64_t *st);
/* Strides that read an input of shape `in` at coordinates of the (broadcast) shape `out`:
 * right-aligned, 0 on stretched and missing axes. in must broadcast to out. */
void fl_shape_bcast_strides(const fl_shape *in, const fl_shape *out, int64_t *st);

/* A contiguous view of data with shape s. */
fl_tensor fl_tensor_view(fl_dtype t, const fl_shape *s, void *data);
/* A view of a sub-range [start, start+len) of axis `axis` (no copy); -1 on a bad range. */
int fl_tensor_slice(const fl_tensor *t, int axis, int64_t start, int64_t len, fl_tensor *out,
                    fl_err *e);
int fl_tensor_is_contiguous(const fl_tensor *t);

#endif
