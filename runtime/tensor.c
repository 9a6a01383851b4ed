/* Shapes and views (see tensor.h). */
#include "runtime/tensor.h"

#include <stdio.h>
#include <string.h>

size_t fl_dtype_size(fl_dtype t) {
    switch (t) {
    case FL_F32: return 4;
    case FL_F64: return 8;
    case FL_I32: return 4;
    case FL_BF16: return 2;
    case FL_F16: return 2;
    }
    return 0;
}

const char *fl_dtype_name(fl_dtype t) {
    switch (t) {
    case FL_F32: return "F32";
    case FL_F64: return "F64";
    case FL_I32: return "I32";
    case FL_BF16: return "BF16";
    case FL_F16: return "F16";
    }
    return "?";
}

int fl_shape_make(fl_shape *s, int ndim, const int64_t *d, fl_err *e) {
    if (ndim < 0 || ndim > FL_MAX_DIMS)
        return fl_errf(e, "shape: %d axes (allowed 0..%d)", ndim, FL_MAX_DIMS);
    if (ndim > 0 && !d) return fl_errf(e, "shape: NULL sizes for %d axes", ndim);
    memset(s, 0, sizeof *s);
    s->ndim = ndim;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (d[i] < 1) return fl_errf(e, "shape: axis %d has size %lld (must be >= 1)", i, (long long)d[i]);
        if (d[i] > ((int64_t)1 << 40) / n) return fl_errf(e, "shape: element count overflows");
        n *= d[i];
        s->d[i] = d[i];
    }
    return 0;
}

int64_t fl_shape_numel(const fl_shape *s) {
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) n *= s->d[i];
    return n;
}

int fl_shape_eq(const fl_shape *a, const fl_shape *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->d[i] != b->d[i]) return 0;
    return 1;
}

char *fl_shape_str(const fl_shape *s, char *buf, size_t cap) {
    size_t k = 0;
    if (cap == 0) return buf;
    buf[0] = '\0';
    k += (size_t)snprintf(buf + k, k < cap ? cap - k : 0, "[");
    for (int i = 0; i < s->ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, i ? ",%lld" : "%lld", (long long)s->d[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

int fl_shape_broadcast(const fl_shape *a, const fl_shape *b, fl_shape *out, fl_err *e) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    fl_shape r;
    memset(&r, 0, sizeof r);
    r.ndim = nd;
    for (int i = 0; i < nd; i++) {
        int ia = a->ndim - nd + i, ib = b->ndim - nd + i;
        int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char sa[128], sb[128];
            return fl_errf(e, "shapes %s and %s do not broadcast (axis %d: %lld vs %lld)",
                           fl_shape_str(a, sa, sizeof sa), fl_shape_str(b, sb, sizeof sb), i,
                           (long long)da, (long long)db);
        }
        r.d[i] = da == 1 ? db : da;
    }
    *out = r;
    return 0;
}

void fl_shape_strides(const fl_shape *s, int64_t *st) {
    int64_t acc = 1;
    for (int i = s->ndim - 1; i >= 0; i--) {
        st[i] = acc;
        acc *= s->d[i];
    }
}

void fl_shape_bcast_strides(const fl_shape *in, const fl_shape *out, int64_t *st) {
    int64_t own[FL_MAX_DIMS];
    fl_shape_strides(in, own);
    for (int i = 0; i < out->ndim; i++) {
        int j = in->ndim - out->ndim + i;
        st[i] = (j >= 0 && in->d[j] != 1) ? own[j] : 0;
    }
}

fl_tensor fl_tensor_view(fl_dtype t, const fl_shape *s, void *data) {
    fl_tensor v;
    memset(&v, 0, sizeof v);
    v.dtype = t;
    v.shape = *s;
    v.data = data;
    fl_shape_strides(s, v.stride);
    return v;
}

int fl_tensor_slice(const fl_tensor *t, int axis, int64_t start, int64_t len, fl_tensor *out,
                    fl_err *e) {
    if (axis < 0 || axis >= t->shape.ndim)
        return fl_errf(e, "slice: axis %d out of range for %d axes", axis, t->shape.ndim);
    if (start < 0 || len < 1 || start + len > t->shape.d[axis])
        return fl_errf(e, "slice: [%lld, %lld) out of range for axis %d of size %lld",
                       (long long)start, (long long)(start + len), axis,
                       (long long)t->shape.d[axis]);
    *out = *t;
    out->shape.d[axis] = len;
    out->data = (char *)t->data + (size_t)(start * t->stride[axis]) * fl_dtype_size(t->dtype);
    return 0;
}

int fl_tensor_is_contiguous(const fl_tensor *t) {
    int64_t st[FL_MAX_DIMS];
    fl_shape_strides(&t->shape, st);
    for (int i = 0; i < t->shape.ndim; i++)
        if (t->shape.d[i] > 1 && st[i] != t->stride[i]) return 0;
    return 1;
}
