/* conv2d on the CPU: the GEMM-based paths (a pointwise
 * conv as GEMMs straight on x, everything else im2col + GEMM per group, both over row tiles).
 * The depthwise direct kernels live in conv_depthwise.c, the parameter checks and padding
 * helpers in conv_shape.c, the GEMM micro-kernels in gemm*.c. See conv.h for layouts and the
 * determinism contract. */
#include "runtime/cpu/conv.h"

#include <cblas.h>
#include <omp.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/conv_internal.h"
#include "runtime/cpu/gemm.h"

/* Target size of one tile's im2col block: small enough that the GEMM operands stay in the
 * per-core caches (measured with tests/bench/bench_conv: 1 MB tiles ran sgemm about 3x faster
 * than 8 MB ones on a 2-core EPYC), large enough that the GEMMs are not tiny. */
#define FL_CONV_TILE_BYTES ((size_t)1 << 20)
/* Upper bound on the weight-gradient partial sums kept per call (see backward_weight). */
#define FL_CONV_WGRAD_BYTES ((size_t)64 << 20)
/* Output pixels per weight-gradient slab at least: each slab beyond the first costs one pass
 * over its partial sums (memory-bound, ~30 multiply-adds' worth per weight), so a slab must
 * carry a few hundred pixels of GEMM work to be worth its reduction. Measured in the
 * EfficientNet-B0 step: 16 slabs of 12 pixels each at 7x7 made the reduction as costly as the
 * GEMMs. Below that, the work splits over output-channel blocks instead (no reduction). */
#define FL_CONV_WGRAD_MIN_PIX 512
/* Weight-gradient tasks per call (slabs x channel blocks) at most. */
#define FL_CONV_WGRAD_TASKS 16
/* Forward and backward-data tiles per call at least (rows permitting), so two or more cores get
 * work on a small batch (the gemm.h results do not depend on the tiling at all). */
#define FL_CONV_MIN_TILES 8

/* ---- weight repacking ---------------------------------------------- */

/* OIHW -> [C_out][KH][KW][Cig]: one GEMM row per output channel with the reduction index in
 * im2col order (kh, kw, ci), ci innermost as in NHWC. For depthwise (Cig = 1) this is
 * [C][KH][KW]; the depthwise kernels want [KH][KW][C], see repack_dw. */
static void repack_ohwi(const fl_conv2d_shape *s, const float *w, float *wp) {
    const fl_conv2d_params *p = &s->p;
    for (int co = 0; co < p->C_out; co++)
        for (int ci = 0; ci < s->Cig; ci++)
            for (int kh = 0; kh < p->KH; kh++)
                for (int kw = 0; kw < p->KW; kw++)
                    wp[(size_t)co * s->K + ((size_t)kh * p->KW + kw) * s->Cig + ci] =
                        w[(((size_t)co * s->Cig + ci) * p->KH + kh) * p->KW + kw];
}

static void unpack_ohwi(const fl_conv2d_shape *s, const float *wp, float *w) {
    const fl_conv2d_params *p = &s->p;
    for (int co = 0; co < p->C_out; co++)
        for (int ci = 0; ci < s->Cig; ci++)
            for (int kh = 0; kh < p->KH; kh++)
                for (int kw = 0; kw < p->KW; kw++)
                    w[(((size_t)co * s->Cig + ci) * p->KH + kh) * p->KW + kw] =
                        wp[(size_t)co * s->K + ((size_t)kh * p->KW + kw) * s->Cig + ci];
}

/* OIHW with Cig = 1 ([C][KH][KW]) <-> [KH][KW][C]. */
static void repack_dw(const fl_conv2d_shape *s, const float *w, float *wp) {
    int C = s->p.C_out, KK = s->p.KH * s->p.KW;
    for (int c = 0; c < C; c++)
        for (int k = 0; k < KK; k++) wp[(size_t)k * C + c] = w[(size_t)c * KK + k];
}

static void unpack_dw(const fl_conv2d_shape *s, const float *wp, float *w) {
    int C = s->p.C_out, KK = s->p.KH * s->p.KW;
    for (int c = 0; c < C; c++)
        for (int k = 0; k < KK; k++) w[(size_t)c * KK + k] = wp[(size_t)k * C + c];
}

/* ---- tiles of output rows -------------------------------------------------------------------
 * A "row" is one output image row r = n*OH + oh. Rows [r0, r1) form a tile; a tile's output
 * pixels are contiguous in NHWC, so its GEMM reads and writes y / dy in place. The GEMM input of
 * a tile is its im2col block col[(r - r0)*OW + ow][(kh*KW + kw)*Cig + ci] (zero where a tap falls
 * into padding) or, for a pointwise conv, the x rows themselves.
 *
 * Parallelism: OpenMP threads take whole tiles (forward and backward data: at least
 * FL_CONV_MIN_TILES of them; a pointwise forward with few tiles also splits its output channels
 * by panel), each with its own col buffer and a single-threaded GEMM (gemm.h, or OpenBLAS held
 * at one thread for the call; see blas_serial_begin). Tiles are sized from the shape only (a col
 * block of about FL_CONV_TILE_BYTES, which keeps the GEMM operands in the per-core caches), so
 * which sums happen, and in what order, never depends on the thread count. */

/* Does the layout of x serve as the GEMM input directly (1x1, stride 1, unpadded, ungrouped)? */
static int is_pointwise(const fl_conv2d_shape *s) {
    const fl_conv2d_params *p = &s->p;
    return p->KH == 1 && p->KW == 1 && p->stride_h == 1 && p->stride_w == 1 && p->groups == 1 &&
           !p->pad_top && !p->pad_left && !p->pad_bottom && !p->pad_right;
}

static int is_depthwise(const fl_conv2d_shape *s) {
    return s->p.groups == s->p.C_in && s->p.groups == s->p.C_out;
}

typedef struct tiling {
    int R;       /* output rows per tile (the last tile may be shorter) */
    int rows;    /* N*OH */
    int ntiles;
} tiling;

/* R rows per tile: about tile_bytes of GEMM operands per tile (its im2col block plus its output
 * block), at least min_rows, at most all rows. */
static tiling make_tiling(const fl_conv2d_shape *s, size_t tile_bytes, int min_rows, int min_tiles) {
    tiling t;
    size_t row_bytes = (size_t)s->OW * ((size_t)s->K + s->Cog) * sizeof(float);
    size_t R = tile_bytes / (row_bytes ? row_bytes : 1);
    t.rows = s->p.N * s->OH;
    if (min_tiles > 1 && R > ((size_t)t.rows + min_tiles - 1) / min_tiles)
        R = ((size_t)t.rows + min_tiles - 1) / min_tiles;
    if (R < (size_t)min_rows) R = (size_t)min_rows;
    if (R < 1) R = 1;
    if (R > (size_t)t.rows) R = (size_t)t.rows;
    t.R = (int)R;
    t.ntiles = (t.rows + t.R - 1) / t.R;
    return t;
}

static void tile_range(const tiling *t, int i, int *r0, int *r1) {
    *r0 = i * t->R;
    *r1 = *r0 + t->R < t->rows ? *r0 + t->R : t->rows;
}

/* OpenBLAS runs single-threaded inside our OpenMP tiles (two thread pools on the same cores
 * fight: measured several times slower). Its global thread count is set to 1 for the duration of
 * a call and restored afterwards. */
static int blas_serial_begin(void) {
    int n = openblas_get_num_threads();
    if (n != 1) openblas_set_num_threads(1);
    return n;
}

static void blas_serial_end(int n) {
    if (n != 1) openblas_set_num_threads(n);
}

static void im2col(const fl_conv2d_shape *s, const float *x, int g, int r0, int r1, float *col) {
    const fl_conv2d_params *p = &s->p;
    const int Cig = s->Cig, K = s->K;
    const size_t tap = (size_t)Cig * sizeof(float);
    /* floats in one kernel row's taps when they are contiguous in x (dense, ungrouped), else 0 */
    const int run = p->dilation_w == 1 && p->groups == 1 ? p->KW * Cig : 0;
    for (int r = r0; r < r1; r++) {
        int n = r / s->OH, oh = r % s->OH;
        for (int ow = 0; ow < s->OW; ow++) {
            float *dst = col + ((size_t)(r - r0) * s->OW + ow) * K;
            for (int kh = 0; kh < p->KH; kh++) {
                int ih = oh * p->stride_h - p->pad_top + kh * p->dilation_h;
                if (ih < 0 || ih >= p->H) {
                    memset(dst + (size_t)kh * p->KW * Cig, 0, tap * p->KW);
                    continue;
                }
                const float *xrow = x + ((size_t)n * p->H + ih) * p->W * p->C_in + (size_t)g * Cig;
                const int iw0 = ow * p->stride_w - p->pad_left;
                if (run && iw0 >= 0 && iw0 + p->KW <= p->W) {
                    /* the KW taps are adjacent pixels: one contiguous run of KW*Cig floats (a
                     * memcpy per tap cost more than the copy for the detector's few channels) */
                    const float *src = xrow + (size_t)iw0 * p->C_in;
                    float *d = dst + (size_t)kh * p->KW * Cig;
#pragma omp simd
                    for (int k = 0; k < run; k++) d[k] = src[k];
                    continue;
                }
                for (int kw = 0; kw < p->KW; kw++) {
                    int iw = iw0 + kw * p->dilation_w;
                    float *d = dst + ((size_t)kh * p->KW + kw) * Cig;
                    if (iw < 0 || iw >= p->W)
                        memset(d, 0, tap);
                    else
                        memcpy(d, xrow + (size_t)iw * p->C_in, tap);
                }
            }
        }
    }
}

/* The GEMM input of a tile for group g: x itself for a pointwise conv, else its im2col block. */
static const float *tile_input(const fl_conv2d_shape *s, const float *x, int g, int r0, int r1,
                               float *col, int *lda) {
    if (is_pointwise(s)) {
        *lda = s->p.C_in;
        return x + (size_t)r0 * s->OW * s->p.C_in;
    }
    im2col(s, x, g, r0, r1, col);
    *lda = s->K;
    return col;
}

/* dx += col scattered back to the input pixels of the tile's windows (group g), in the fixed
 * order ow, kh, kw. */
static void col2im_add(const fl_conv2d_shape *s, const float *col, int g, int r0, int r1,
                       float *dx) {
    const fl_conv2d_params *p = &s->p;
    const int Cig = s->Cig, K = s->K;
    for (int r = r0; r < r1; r++) {
        int n = r / s->OH, oh = r % s->OH;
        for (int ow = 0; ow < s->OW; ow++) {
            const float *src = col + ((size_t)(r - r0) * s->OW + ow) * K;
            for (int kh = 0; kh < p->KH; kh++) {
                int ih = oh * p->stride_h - p->pad_top + kh * p->dilation_h;
                if (ih < 0 || ih >= p->H) continue;
                float *dxrow = dx + ((size_t)n * p->H + ih) * p->W * p->C_in + (size_t)g * Cig;
                for (int kw = 0; kw < p->KW; kw++) {
                    int iw = ow * p->stride_w - p->pad_left + kw * p->dilation_w;
                    if (iw < 0 || iw >= p->W) continue;
                    float *d = dxrow + (size_t)iw * p->C_in;
                    const float *c = src + ((size_t)kh * p->KW + kw) * Cig;
#pragma omp simd
                    for (int ci = 0; ci < Cig; ci++) d[ci] += c[ci];
                }
            }
        }
    }
}

static int check_ptrs(const char *what, const void *a, const char *an, const void *b,
                      const char *bn, const void *c, const char *cn, fl_err *e) {
    if (!a) return fl_errf(e, "conv2d %s: %s is NULL", what, an);
    if (!b) return fl_errf(e, "conv2d %s: %s is NULL", what, bn);
    if (!c) return fl_errf(e, "conv2d %s: %s is NULL", what, cn);
    return 0;
}

/* ---- packed weights and planned scratch ------------------------------------------------------
 * Every kernel below runs on memory its caller provides: the weights already packed (see
 * pack_layout; 1x1 kernels too) and one scratch block laid out by the
 * *_ws functions: fixed parts first, then one im2col tile per thread, each rounded to a cache
 * line. A kernel uses as many threads as the block has tiles for (at most the OpenMP maximum);
 * results do not depend on that number. */

#define ALIGN64(n) (((n) + (size_t)63) & ~(size_t)63)

/* The packed weights of a GEMM conv hold three copies, each group after group: the
 * [C_out][KH][KW][Cig] rows (OpenBLAS's operand, FLUKE_GEMM=blas), then gemm.h panels of
 * B = W_g^T [K x Cog] (forward), then panels of B = W_g [Cog x K] (backward data). Offsets are
 * multiples of 16 floats (64 bytes from an aligned base). */
typedef struct pack_layout {
    size_t fwd, bwd, fwd_g, bwd_g, total; /* offsets, per-group strides, total (floats) */
} pack_layout;

/* Backward data of a dense stride-1 conv is itself a forward conv: dx = conv(dy, W') with W'
 * the kernel flipped and its channel axes swapped, padding k-1-pad per side. That form needs no
 * col2im scatter and writes each dx element once. */
static int bwd_as_conv(const fl_conv2d_shape *s) {
    const fl_conv2d_params *p = &s->p;
    return !is_pointwise(s) && !is_depthwise(s) && p->groups == 1 && p->stride_h == 1 &&
           p->stride_w == 1 && p->dilation_h == 1 && p->dilation_w == 1 && p->pad_top < p->KH &&
           p->pad_bottom < p->KH && p->pad_left < p->KW && p->pad_right < p->KW;
}

/* The forward conv that computes s's backward data (valid when bwd_as_conv(s)). */
static fl_conv2d_shape transposed_of(const fl_conv2d_shape *s) {
    const fl_conv2d_params *p = &s->p;
    fl_conv2d_params q = *p;
    q.H = s->OH, q.W = s->OW, q.C_in = p->C_out, q.C_out = p->C_in;
    q.pad_top = p->KH - 1 - p->pad_top, q.pad_bottom = p->KH - 1 - p->pad_bottom;
    q.pad_left = p->KW - 1 - p->pad_left, q.pad_right = p->KW - 1 - p->pad_right;
    fl_conv2d_shape t;
    fl_err e;
    if (fl_conv2d_shape_of(&q, &t, &e)) memset(&t, 0, sizeof t); /* cannot happen: output is s's input */
    return t;
}

static pack_layout pack_layout_of(const fl_conv2d_shape *s) {
    pack_layout l;
    l.fwd_g = fl_gemm_packed_numel(s->K, s->Cog);
    l.bwd_g = bwd_as_conv(s) ? fl_gemm_packed_numel(s->K / s->Cig * s->Cog, s->Cig)
                             : fl_gemm_packed_numel(s->Cog, s->K);
    l.fwd = ((size_t)s->p.C_out * s->K + 15) & ~(size_t)15;
    l.bwd = l.fwd + l.fwd_g * s->p.groups;
    l.total = l.bwd + l.bwd_g * s->p.groups;
    return l;
}

static size_t pack_numel(const fl_conv2d_shape *s) {
    if (is_depthwise(s) && !is_pointwise(s)) return (size_t)s->p.C_out * s->K;
    return pack_layout_of(s).total;
}

static void pack(const fl_conv2d_shape *s, const float *w, float *wp) {
    if (is_depthwise(s) && !is_pointwise(s)) {
        repack_dw(s, w, wp);
        return;
    }
    repack_ohwi(s, w, wp);
    const pack_layout l = pack_layout_of(s);
    if (bwd_as_conv(s)) { /* B'[(kh', kw', co)][ci] = W[co][ci][KH-1-kh'][KW-1-kw'] */
        const int KH = s->p.KH, KW = s->p.KW, Co = s->p.C_out, Ci = s->p.C_in;
        const int K2 = KH * KW * Co, NR = FL_GEMM_NR;
        fl_gemm_pack_b(s->K, Co, wp, 1, s->K, wp + l.fwd);
        for (int j = 0; j < (Ci + NR - 1) / NR; j++)
            for (int k2 = 0; k2 < K2; k2++) {
                const int co = k2 % Co, t = k2 / Co, kh = KH - 1 - t / KW, kw = KW - 1 - t % KW;
                const float *src = wp + (size_t)co * s->K + ((size_t)kh * KW + kw) * Ci;
                float *d = wp + l.bwd + ((size_t)j * K2 + k2) * NR;
                for (int c = 0; c < NR; c++) d[c] = j * NR + c < Ci ? src[j * NR + c] : 0.0f;
            }
        return;
    }
    for (int g = 0; g < s->p.groups; g++) {
        const float *wg = wp + (size_t)g * s->Cog * s->K; /* [Cog][K] */
        fl_gemm_pack_b(s->K, s->Cog, wg, 1, s->K, wp + l.fwd + l.fwd_g * g);
        fl_gemm_pack_b(s->Cog, s->K, wg, s->K, 1, wp + l.bwd + l.bwd_g * g);
    }
}

/* Which GEMM the conv paths run: FLUKE_GEMM=blas keeps OpenBLAS, plain|avx2|avx512 force a
 * gemm.h path (capped at what the CPU runs); unset or anything else: the best gemm.h path.
 * Read per call (a getenv costs nothing next to a conv), so nothing is cached globally. */
typedef struct gemm_choice {
    int blas;
    fl_gemm_path path;
} gemm_choice;

static gemm_choice gemm_choice_now(void) {
    const char *v = getenv("FLUKE_GEMM");
    gemm_choice c = {v && !strcmp(v, "blas"), fl_gemm_path_named(v)};
    return c;
}

/* Threads the kernels plan scratch for: the OpenMP maximum at the time of the size query. */
static int plan_threads(void) {
    int n = omp_get_max_threads();
    return n > 0 ? n : 1;
}

/* The scratch layout of one call: `fixed` bytes, then `per` bytes per thread. */
typedef struct wslayout {
    size_t fixed, per;
} wslayout;

static wslayout fwd_layout(const fl_conv2d_shape *s, size_t tile_bytes) {
    wslayout l = {0, 0};
    if (is_depthwise(s) && !is_pointwise(s)) return l;
    tiling t = make_tiling(s, tile_bytes, 1, FL_CONV_MIN_TILES);
    if (!is_pointwise(s)) l.per = ALIGN64((size_t)t.R * s->OW * s->K * sizeof(float));
    return l;
}

static wslayout bwd_data_layout(const fl_conv2d_shape *s, size_t tile_bytes) {
    wslayout l = {0, 0};
    if (is_depthwise(s) && !is_pointwise(s)) return l;
    const fl_conv2d_params *p = &s->p;
    tiling t = make_tiling(s, tile_bytes, (p->KH - 1) * p->dilation_h / p->stride_h,
                           FL_CONV_MIN_TILES);
    if (!is_pointwise(s)) l.per = ALIGN64((size_t)t.R * s->OW * s->K * sizeof(float));
    if (bwd_as_conv(s)) { /* room for either form (FLUKE_GEMM=blas keeps the col2im one) */
        const fl_conv2d_shape s2 = transposed_of(s);
        wslayout l2 = fwd_layout(&s2, tile_bytes);
        if (l2.per > l.per) l.per = l2.per;
    }
    return l;
}

/* The weight-gradient tiling: its tiles, slabs S, channel blocks CB and the bytes of the parts. */
typedef struct wgrad_plan {
    tiling t;
    size_t S;          /* slabs of tiles, each summed into its own buffer */
    int CB;            /* output-channel blocks per slab (ungrouped convs; else 1) */
    size_t acc_bytes;  /* the result-layout accumulator (0: dw itself, 1x1 kernels) */
    size_t part_bytes; /* partial sums of slabs 1..S-1 (or the depthwise blocks) */
    size_t col_bytes;  /* one im2col tile (0: pointwise) */
} wgrad_plan;

static wgrad_plan wgrad_plan_of(const fl_conv2d_shape *s, size_t tile_bytes) {
    const fl_conv2d_params *p = &s->p;
    wgrad_plan w;
    memset(&w, 0, sizeof w);
    w.CB = 1;
    const size_t wn = (size_t)p->C_out * s->K;
    if (is_depthwise(s) && !is_pointwise(s)) {
        w.acc_bytes = ALIGN64(wn * sizeof(float));
        w.part_bytes = ALIGN64(fl_conv2d_dw_wgrad_part_floats(s) * sizeof(float));
        return w;
    }
    w.t = make_tiling(s, tile_bytes, 1, 1);
    size_t S = (size_t)w.t.rows * s->OW / FL_CONV_WGRAD_MIN_PIX;
    if (S > FL_CONV_WGRAD_TASKS) S = FL_CONV_WGRAD_TASKS;
    if (S > FL_CONV_WGRAD_BYTES / (wn * sizeof(float))) S = FL_CONV_WGRAD_BYTES / (wn * sizeof(float));
    if (S < 1) S = 1;
    /* A pointwise conv needs no im2col buffer, so its tiles are simply the slabs: one long GEMM
     * per slab (the reduction over pixels runs much faster in a few long sgemm calls than in
     * many short ones). */
    if (is_pointwise(s)) {
        w.t.R = (int)((w.t.rows + S - 1) / S);
        w.t.ntiles = (w.t.rows + w.t.R - 1) / w.t.R;
    }
    if (S > (size_t)w.t.ntiles) S = (size_t)w.t.ntiles;
    w.S = S;
    /* The tasks the slabs leave to fill go to blocks of at least 16 output channels. Each block
     * of an im2col conv redoes its slab's im2col, so those split only when there is one slab,
     * and then in two (both cores busy). */
    if (p->groups == 1) {
        int cb = (int)(FL_CONV_WGRAD_TASKS / S), cmax = (s->Cog + 15) / 16;
        if (!is_pointwise(s)) cb = S == 1 ? 2 : 1;
        w.CB = cb < cmax ? cb : cmax;
        if (w.CB < 1) w.CB = 1;
    }
    w.acc_bytes = p->KH == 1 && p->KW == 1 ? 0 : ALIGN64(wn * sizeof(float));
    w.part_bytes = S > 1 ? ALIGN64((S - 1) * wn * sizeof(float)) : 0;
    w.col_bytes = is_pointwise(s) ? 0 : ALIGN64((size_t)w.t.R * s->OW * s->K * sizeof(float));
    return w;
}

static wslayout bwd_weight_layout(const fl_conv2d_shape *s, size_t tile_bytes) {
    wgrad_plan w = wgrad_plan_of(s, tile_bytes);
    return (wslayout){w.acc_bytes + w.part_bytes, w.col_bytes};
}

static size_t ws_bytes_for(wslayout l, int nthreads) { return l.fixed + l.per * (size_t)nthreads; }

/* Threads a call may use with ws_bytes of scratch; 0 when the block is too small. */
static int threads_for(wslayout l, size_t ws_bytes) {
    int nt = plan_threads();
    if (ws_bytes < l.fixed) return 0;
    if (l.per) {
        size_t fit = (ws_bytes - l.fixed) / l.per;
        if ((size_t)nt > fit) nt = (int)fit;
    }
    return nt;
}

static int ws_error(const char *what, wslayout l, size_t ws_bytes, fl_err *e) {
    return fl_errf(e, "conv2d %s: scratch of %zu bytes is smaller than one thread needs (%zu)", what,
                   ws_bytes, l.fixed + l.per);
}

/* ---- the kernels on planned memory --------------------------------------------------------- */

/* The forward tiles on gemm.h: y = bias + im2col(x) * W^T per group, bp the forward panels
 * (group stride bp_g). Each y element is one sum in a fixed order, whatever thread runs it. */
static void gemm_forward_tiles(const fl_conv2d_shape *sp, const float *x, const float *bp, size_t bp_g,
                               const float *bias, float *y, const tiling *tp, void *ws, wslayout l,
                               int nt, fl_gemm_path path) {
    const fl_conv2d_shape s = *sp;
    const fl_conv2d_params *p = &s.p;
    const tiling t = *tp;
    const int Co = p->C_out;
    /* A pointwise tile needs no im2col, so its output channels split into chunks of panels
     * as well (more work items for the threads when rows are few). */
    const int np = (s.Cog + FL_GEMM_NR - 1) / FL_GEMM_NR;
    const int nq = is_pointwise(&s) && t.ntiles < 4 * nt ? (np < 4 ? np : 4) : 1;
#pragma omp parallel num_threads(nt)
    {
        float *col = l.per ? (float *)((char *)ws + l.fixed + l.per * (size_t)omp_get_thread_num()) : NULL;
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < t.ntiles * nq; it++) {
            int r0, r1, lda, i = it / nq, q = it % nq;
            tile_range(&t, i, &r0, &r1);
            const int P = (r1 - r0) * s.OW;
            float *yt = y + (size_t)r0 * s.OW * Co;
            for (int g = 0; g < p->groups; g++) {
                const float *a = tile_input(&s, x, g, r0, r1, col, &lda);
                /* y_g[P x Cog] = bias_g + a[P x K] * W_g^T, written once */
                fl_gemm_panels(path, P, s.Cog, s.K, a, lda, bp + bp_g * g, np * q / nq,
                               np * (q + 1) / nq, bias ? FL_GEMM_BIAS : FL_GEMM_ZERO,
                               bias ? bias + (size_t)g * s.Cog : NULL, yt + (size_t)g * s.Cog, Co);
            }
        }
    }
}

static int forward_core(const fl_conv2d_shape *sp, const float *x, const float *wp, const float *bias,
                        float *y, size_t tile_bytes, void *ws, size_t ws_bytes, fl_err *e) {
    const fl_conv2d_shape s = *sp;
    const fl_conv2d_params *p = &s.p;
    if (is_depthwise(&s) && !is_pointwise(&s)) {
        fl_conv2d_dw_forward(&s, x, wp, bias, y);
        return 0;
    }
    const int Co = p->C_out;
    const wslayout l = fwd_layout(&s, tile_bytes);
    const int nt = threads_for(l, ws_bytes);
    if (nt < 1) return ws_error("forward", l, ws_bytes, e);
    const tiling t = make_tiling(&s, tile_bytes, 1, FL_CONV_MIN_TILES);
    const gemm_choice gc = gemm_choice_now();
    if (!gc.blas) {
        gemm_forward_tiles(&s, x, wp + pack_layout_of(&s).fwd, pack_layout_of(&s).fwd_g, bias, y, &t,
                           ws, l, nt, gc.path);
        return 0;
    }
    int nb = blas_serial_begin();
#pragma omp parallel num_threads(nt)
    {
        float *col = l.per ? (float *)((char *)ws + l.fixed + l.per * (size_t)omp_get_thread_num()) : NULL;
#pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < t.ntiles; i++) {
            int r0, r1, lda;
            tile_range(&t, i, &r0, &r1);
            const int P = (r1 - r0) * s.OW;
            float *yt = y + (size_t)r0 * s.OW * Co;
            if (bias) /* the GEMMs then accumulate onto the bias (beta = 1) */
                for (int q = 0; q < P; q++) memcpy(yt + (size_t)q * Co, bias, (size_t)Co * sizeof(float));
            for (int g = 0; g < p->groups; g++) {
                const float *a = tile_input(&s, x, g, r0, r1, col, &lda);
                /* y_g[P x Cog] (+)= a[P x K] * wp_g^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, P, s.Cog, s.K, 1.0f, a, lda,
                            wp + (size_t)g * s.Cog * s.K, s.K, bias ? 1.0f : 0.0f,
                            yt + (size_t)g * s.Cog, Co);
            }
        }
    }
    blas_serial_end(nb);
    return 0;
}

/* Tiles scatter into overlapping input rows, so they run in two waves, even tiles then odd ones.
 * With at least (KH-1)*dilation/stride rows per tile, tiles two apart never touch the same input
 * row, so each wave is race-free and every dx element receives its sums in a fixed order. */
static int backward_data_core(const fl_conv2d_shape *sp, const float *dy, const float *wp, float *dx,
                              size_t tile_bytes, void *ws, size_t ws_bytes, fl_err *e) {
    const fl_conv2d_shape s = *sp;
    const fl_conv2d_params *p = &s.p;
    if (is_depthwise(&s) && !is_pointwise(&s)) {
        fl_conv2d_dw_backward_data(&s, dy, wp, dx);
        return 0;
    }
    const int Co = p->C_out, Ci = p->C_in;
    const wslayout l = bwd_data_layout(&s, tile_bytes);
    const int nt = threads_for(l, ws_bytes);
    if (nt < 1) return ws_error("backward_data", l, ws_bytes, e);
    const int pw = is_pointwise(&s);
    const tiling t = make_tiling(&s, tile_bytes, (p->KH - 1) * p->dilation_h / p->stride_h,
                                 FL_CONV_MIN_TILES);
    const gemm_choice gc = gemm_choice_now();
    const pack_layout pl = pack_layout_of(&s);
    if (!gc.blas && bwd_as_conv(&s)) {
        const fl_conv2d_shape s2 = transposed_of(&s);
        const tiling t2 = make_tiling(&s2, tile_bytes, 1, FL_CONV_MIN_TILES);
        gemm_forward_tiles(&s2, dy, wp + pl.bwd, 0, NULL, dx, &t2, ws, l, nt, gc.path);
        return 0;
    }
    const size_t nx = (size_t)p->N * p->H * p->W * Ci;
    int nb = blas_serial_begin();
#pragma omp parallel num_threads(nt)
    {
        float *col = l.per ? (float *)((char *)ws + l.fixed + l.per * (size_t)omp_get_thread_num()) : NULL;
        if (!pw) { /* a pointwise conv writes every dx element exactly once (beta = 0) */
#pragma omp for schedule(static)
            for (size_t i = 0; i < nx; i++) dx[i] = 0.0f;
        }
        for (int wave = 0; wave < 2; wave++) {
#pragma omp for schedule(dynamic, 1)
            for (int i = wave; i < t.ntiles; i += 2) {
                int r0, r1;
                tile_range(&t, i, &r0, &r1);
                const int P = (r1 - r0) * s.OW;
                const float *dyt = dy + (size_t)r0 * s.OW * Co;
                if (pw && !gc.blas) { /* dx rows = dy rows * W[Co x Ci], written once */
                    fl_gemm(gc.path, P, Ci, Co, dyt, Co, wp + pl.bwd, FL_GEMM_ZERO, NULL,
                            dx + (size_t)r0 * s.OW * Ci, Ci);
                    continue;
                }
                if (pw) { /* dx rows = dy rows * w[Co x Ci] */
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, P, Ci, Co, 1.0f, dyt, Co,
                                wp, Ci, 0.0f, dx + (size_t)r0 * s.OW * Ci, Ci);
                    continue;
                }
                for (int g = 0; g < p->groups; g++) {
                    /* col[P x K] = dy_g[P x Cog] * wp_g[Cog x K] */
                    if (gc.blas)
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, P, s.K, s.Cog, 1.0f,
                                    dyt + (size_t)g * s.Cog, Co, wp + (size_t)g * s.Cog * s.K, s.K,
                                    0.0f, col, s.K);
                    else
                        fl_gemm(gc.path, P, s.K, s.Cog, dyt + (size_t)g * s.Cog, Co,
                                wp + pl.bwd + pl.bwd_g * g, FL_GEMM_ZERO, NULL, col, s.K);
                    col2im_add(&s, col, g, r0, r1, dx);
                }
            }
        }
    }
    blas_serial_end(nb);
    return 0;
}

void fl_conv2d_bias_grad(const fl_conv2d_shape *s, const float *dy, float *dbias) {
    const int C = s->p.C_out, BLK = 16;
    const size_t npix = (size_t)s->p.N * s->OH * s->OW;
    const int nblk = (C + BLK - 1) / BLK;
    /* Channel blocks in parallel; each sums its channels over all pixels in pixel order. */
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nblk; b++) {
        int c0 = b * BLK, c1 = c0 + BLK < C ? c0 + BLK : C;
        double acc[16] = {0};
        for (size_t i = 0; i < npix; i++) {
            const float *row = dy + i * C;
            for (int c = c0; c < c1; c++) acc[c - c0] += row[c];
        }
        for (int c = c0; c < c1; c++) dbias[c] = (float)acc[c - c0];
    }
}

/* The weight gradient sums over every output pixel. The tiles are split into S contiguous slabs
 * (S from the shape: FL_CONV_WGRAD_MIN_PIX pixels each at least, at most FL_CONV_WGRAD_TASKS and
 * FL_CONV_WGRAD_BYTES of partial sums); each slab accumulates into its own buffer and the slabs
 * are added in slab order. A slab's output channels split into CB fixed blocks, one task each
 * (a block's rows of dW are the same sums in the same order as the whole GEMM's). */
static int backward_weight_core(const fl_conv2d_shape *sp, const float *x, const float *dy, float *dw,
                                float *dbias, size_t tile_bytes, void *ws, size_t ws_bytes, fl_err *e) {
    const fl_conv2d_shape s = *sp;
    const fl_conv2d_params *p = &s.p;
    const int Co = p->C_out;
    const size_t wn = (size_t)Co * s.K;
    const wgrad_plan w = wgrad_plan_of(&s, tile_bytes);
    const wslayout l = {w.acc_bytes + w.part_bytes, w.col_bytes};
    const int nt = threads_for(l, ws_bytes);
    if (nt < 1) return ws_error("backward_weight", l, ws_bytes, e);
    if (dbias) fl_conv2d_bias_grad(&s, dy, dbias);
    if (is_depthwise(&s) && !is_pointwise(&s)) {
        float *wp = ws, *part = (float *)((char *)ws + w.acc_bytes);
        fl_conv2d_dw_backward_weight(&s, x, dy, wp, part);
        unpack_dw(&s, wp, dw);
        return 0;
    }
    const tiling t = w.t;
    const size_t S = w.S;
    /* Slab 0 accumulates in the result layout buffer; 1x1 kernels need no unpacking. */
    const int unpack = w.acc_bytes > 0;
    float *wp = unpack ? (float *)ws : dw;
    float *part = (float *)((char *)ws + w.acc_bytes);
    int nb = blas_serial_begin();
#pragma omp parallel num_threads(nt)
    {
        float *col = l.per ? (float *)((char *)ws + l.fixed + l.per * (size_t)omp_get_thread_num()) : NULL;
#pragma omp for schedule(dynamic, 1)
        for (size_t task = 0; task < S * (size_t)w.CB; task++) {
            const size_t sl = task / (size_t)w.CB;
            const int cb = (int)(task % (size_t)w.CB);
            const int c0 = s.Cog * cb / w.CB, c1 = s.Cog * (cb + 1) / w.CB;
            float *acc = sl == 0 ? wp : part + (sl - 1) * wn;
            int t0 = (int)(t.ntiles * sl / S), t1 = (int)(t.ntiles * (sl + 1) / S);
            for (int i = t0; i < t1; i++) {
                int r0, r1, lda;
                tile_range(&t, i, &r0, &r1);
                const int P = (r1 - r0) * s.OW;
                for (int g = 0; g < p->groups; g++) {
                    const float *a = tile_input(&s, x, g, r0, r1, col, &lda);
                    const size_t ch = (size_t)g * s.Cog + c0;
                    /* acc rows ch..[c1-c0] (+)= dy^T[those channels x P] * a[P x K] */
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c1 - c0, s.K, P, 1.0f,
                                dy + (size_t)r0 * s.OW * Co + ch, Co, a, lda,
                                i == t0 ? 0.0f : 1.0f, acc + ch * s.K, s.K);
                }
            }
        }
        if (S > 1) {
#pragma omp for schedule(static)
            for (size_t j = 0; j < wn; j++)
                for (size_t sl = 1; sl < S; sl++) wp[j] += part[(sl - 1) * wn + j];
        }
    }
    blas_serial_end(nb);
    if (unpack) unpack_ohwi(&s, wp, dw);
    return 0;
}

/* ---- entry points on planned memory -------------------------------------------------------- */

size_t fl_conv2d_pack_numel(const fl_conv2d_params *p) {
    fl_err e;
    fl_conv2d_shape s;
    return fl_conv2d_shape_of(p, &s, &e) ? 0 : pack_numel(&s);
}

void fl_conv2d_pack(const fl_conv2d_params *p, const float *w, float *wp) {
    fl_err e;
    fl_conv2d_shape s;
    if (!fl_conv2d_shape_of(p, &s, &e) && pack_numel(&s)) pack(&s, w, wp);
}

#define WS_QUERY(fn, layout)                                       \
    size_t fn(const fl_conv2d_params *p) {                         \
        fl_err e;                                                  \
        fl_conv2d_shape s;                                         \
        if (fl_conv2d_shape_of(p, &s, &e)) return 0;                         \
        return ws_bytes_for(layout(&s, FL_CONV_TILE_BYTES), plan_threads()); \
    }
WS_QUERY(fl_conv2d_forward_ws_bytes, fwd_layout)
WS_QUERY(fl_conv2d_backward_data_ws_bytes, bwd_data_layout)
WS_QUERY(fl_conv2d_backward_weight_ws_bytes, bwd_weight_layout)
#undef WS_QUERY

int fl_conv2d_forward_planned(const fl_conv2d_params *p, const float *x, const float *wp,
                              const float *bias, float *y, void *ws, size_t ws_bytes, fl_err *e) {
    fl_conv2d_shape s;
    if (fl_conv2d_shape_of(p, &s, e)) return fl_errprefix(e, "conv2d forward");
    if (check_ptrs("forward", x, "x", wp, "w", y, "y", e)) return -1;
    return forward_core(&s, x, wp, bias, y, FL_CONV_TILE_BYTES, ws, ws_bytes, e);
}

int fl_conv2d_backward_data_planned(const fl_conv2d_params *p, const float *dy, const float *wp,
                                    float *dx, void *ws, size_t ws_bytes, fl_err *e) {
    fl_conv2d_shape s;
    if (fl_conv2d_shape_of(p, &s, e)) return fl_errprefix(e, "conv2d backward_data");
    if (check_ptrs("backward_data", dy, "dy", wp, "w", dx, "dx", e)) return -1;
    return backward_data_core(&s, dy, wp, dx, FL_CONV_TILE_BYTES, ws, ws_bytes, e);
}

int fl_conv2d_backward_weight_planned(const fl_conv2d_params *p, const float *x, const float *dy,
                                      float *dw, float *dbias, void *ws, size_t ws_bytes, fl_err *e) {
    fl_conv2d_shape s;
    if (fl_conv2d_shape_of(p, &s, e)) return fl_errprefix(e, "conv2d backward_weight");
    if (check_ptrs("backward_weight", x, "x", dy, "dy", dw, "dw", e)) return -1;
    return backward_weight_core(&s, x, dy, dw, dbias, FL_CONV_TILE_BYTES, ws, ws_bytes, e);
}

/* ---- allocating entry points: pack and scratch per call, then the planned kernels ---------- */

/* One block: the packed weights (when the kernel wants them), then the call's scratch. */
static int alloc_call(const fl_conv2d_shape *s, wslayout l, int packed, const float *w, void **block,
                      const float **wp, void **ws, size_t *ws_bytes) {
    size_t pb = packed ? ALIGN64(pack_numel(s) * sizeof(float)) : 0;
    *ws_bytes = ws_bytes_for(l, plan_threads());
    *block = NULL;
    if (pb + *ws_bytes) {
        *block = aligned_alloc(64, pb + *ws_bytes);
        if (!*block) return -1;
    }
    *ws = (char *)*block + pb;
    if (pb) pack(s, w, *block);
    *wp = pb ? *block : w;
    return 0;
}

int fl_conv2d_forward_ex(const fl_conv2d_params *p, const float *x, const float *w,
                         const float *bias, float *y, size_t tile_bytes, fl_err *e) {
    fl_conv2d_shape s;
    if (fl_conv2d_shape_of(p, &s, e)) return fl_errprefix(e, "conv2d forward");
    if (check_ptrs("forward", x, "x", w, "w", y, "y", e)) return -1;
    void *block, *ws;
    const float *wp;
    size_t wsb;
    if (alloc_call(&s, fwd_layout(&s, tile_bytes), 1, w, &block, &wp, &ws, &wsb))
        return fl_errf(e, "conv2d forward: out of memory for the packed weights and scratch");
    int rc = forward_core(&s, x, wp, bias, y, tile_bytes, ws, wsb, e);
    free(block);
    return rc;
}

int fl_conv2d_backward_data_ex(const fl_conv2d_params *p, const float *dy, const float *w,
                               float *dx, size_t tile_bytes, fl_err *e) {
    fl_conv2d_shape s;
    if (fl_conv2d_shape_of(p, &s, e)) return fl_errprefix(e, "conv2d backward_data");
    if (check_ptrs("backward_data", dy, "dy", w, "w", dx, "dx", e)) return -1;
    void *block, *ws;
    const float *wp;
    size_t wsb;
    if (alloc_call(&s, bwd_data_layout(&s, tile_bytes), 1, w, &block, &wp, &ws, &wsb))
        return fl_errf(e, "conv2d backward_data: out of memory for the packed weights and scratch");
    int rc = backward_data_core(&s, dy, wp, dx, tile_bytes, ws, wsb, e);
    free(block);
    return rc;
}

int fl_conv2d_backward_weight_ex(const fl_conv2d_params *p, const float *x, const float *dy,
                                 float *dw, float *dbias, size_t tile_bytes, fl_err *e) {
    fl_conv2d_shape s;
    if (fl_conv2d_shape_of(p, &s, e)) return fl_errprefix(e, "conv2d backward_weight");
    if (check_ptrs("backward_weight", x, "x", dy, "dy", dw, "dw", e)) return -1;
    void *block, *ws;
    const float *wp;
    size_t wsb;
    if (alloc_call(&s, bwd_weight_layout(&s, tile_bytes), 0, NULL, &block, &wp, &ws, &wsb))
        return fl_errf(e, "conv2d backward_weight: out of memory for the weight-gradient scratch");
    int rc = backward_weight_core(&s, x, dy, dw, dbias, tile_bytes, ws, wsb, e);
    free(block);
    return rc;
}

int fl_conv2d_forward(const fl_conv2d_params *p, const float *x, const float *w,
                      const float *bias, float *y, fl_err *e) {
    return fl_conv2d_forward_ex(p, x, w, bias, y, FL_CONV_TILE_BYTES, e);
}

int fl_conv2d_backward_data(const fl_conv2d_params *p, const float *dy, const float *w,
                            float *dx, fl_err *e) {
    return fl_conv2d_backward_data_ex(p, dy, w, dx, FL_CONV_TILE_BYTES, e);
}

int fl_conv2d_backward_weight(const fl_conv2d_params *p, const float *x, const float *dy,
                              float *dw, float *dbias, fl_err *e) {
    return fl_conv2d_backward_weight_ex(p, x, dy, dw, dbias, FL_CONV_TILE_BYTES, e);
}
