/* One comparison helper for every float32-vs-reference check of the unit tests.
 *
 * Why not a bare relative bound: a float32 result differs from its float64 (or another BLAS's)
 * value by rounding whose size depends on the summation order, so on the BLAS kernel the CPU
 * selects (OPENBLAS_CORETYPE), threads and blocking. What is stable across CPUs is the error
 * measured against the problem's own rounding scale:
 *
 *   nc_sumbound  componentwise, for reductions whose terms the test knows:
 *                |ours_i - ref_i| <= k * u * mag_i,  mag_i >= sum |terms of element i|,
 *                u = 2^-24. The figure is max_i |d_i| / (u * mag_i), in units of u; a sum of
 *                n terms rounds to within about n*u*sum|terms| (typically sqrt(n)), so k is a
 *                small multiple of the reduction length and holds for any summation order.
 *   nc_normwise  per tensor: max|ours - ref| / max(max|ref|, floor). floor is absolute, chosen
 *                by the test at the scale of the largest value the result is computed from
 *                (e.g. the largest gradient of the model), so a tensor that is small because
 *                its terms cancel is held to the error its terms can carry, not to its own size.
 *   nc_noise     per tensor: ||ours - ref|| / max(spread, u * ||ref||), in the 2-norm and in the
 *                max-norm (the larger ratio counts), where spread is the RMS change of our own
 *                float32 result when every float32 input is moved by one ulp (nc_perturb_ulp,
 *                nc_spread): the result's own float32 noise. A backward-stable computation has
 *                a ratio of order 1 on any CPU; a deterministic bug is not in the spread (every
 *                perturbed run has it too) and shows as a large ratio.
 *
 * NaN or Inf anywhere (ours or the reference) makes every figure +INF, so it fails any limit:
 * NaN-poisoned outputs that a kernel forgot to write cannot pass (fmax would drop the NaN).
 * Each check returns a nc_res; nc_ok/nc_report decide and print one line; nc_worst collects the
 * worst figure of a test so it can print it at the end. */
#ifndef FL_TEST_NUMCMP_H
#define FL_TEST_NUMCMP_H

#include <stddef.h>
#include <stdint.h>

#define NC_U32 (1.0 / 16777216.0) /* float32 unit roundoff, 2^-24 */

/* A read-only vector of float or double (the reference is often double). */
typedef struct nc_vec {
    const void *p;
    int f64;
} nc_vec;
#define NC_F32(x) ((nc_vec){(const void *)(x), 0})
#define NC_F64(x) ((nc_vec){(const void *)(x), 1})

typedef struct nc_res {
    double fig;       /* the figure the limit applies to; +INF when anything is non-finite */
    double max_abs;   /* max |ours - ref| */
    double scale;     /* what the error was divided by (worst element for nc_sumbound) */
    size_t at;        /* index of the worst element (or of the first non-finite one) */
    size_t nonfinite; /* elements where ours or the reference is NaN or Inf */
    size_t n;
} nc_res;

double nc_get(nc_vec v, size_t i);
/* max |v_i|; NaN when any element is NaN or Inf. */
double nc_max_abs(nc_vec v, size_t n);
/* sqrt(sum v_i^2); NaN when any element is NaN or Inf. */
double nc_norm2(nc_vec v, size_t n);

nc_res nc_normwise(nc_vec ours, nc_vec ref, size_t n, double floor);
nc_res nc_sumbound(nc_vec ours, nc_vec ref, nc_vec mag, size_t n);
/* The float32 noise of a result: its base value, then the same computation with perturbed
 * inputs (nc_perturb_ulp) added run by run; two spreads, the RMS over runs of ||run - base||_2
 * and of ||run - base||_inf. */
typedef struct nc_spread {
    float *base; /* NULL when the copy failed (the spread is then +INF) */
    size_t n;
    double d2, dinf2;
    int runs;
} nc_spread;
void nc_spread_begin(nc_spread *s, const float *v, size_t n);
void nc_spread_add(nc_spread *s, const float *v);
double nc_spread_rms(const nc_spread *s);     /* RMS of ||run - base||_2 */
double nc_spread_rms_inf(const nc_spread *s); /* RMS of ||run - base||_inf */
void nc_spread_free(nc_spread *s);

/* The noise ratio of ours (normally sp->base) against ref: the larger of
 *   ||ours - ref||_2   / max(RMS ||run - base||_2,   u * ||ref||_2)   and
 *   ||ours - ref||_inf / max(RMS ||run - base||_inf, u * ||ref||_inf),
 * the first for errors spread over a tensor, the second for one bad element in a large one.
 * r.scale is the denominator of the larger ratio. */
nc_res nc_noise(nc_vec ours, nc_vec ref, size_t n, const nc_spread *sp);
/* The largest ||ours - ref||_2 that nc_noise allows at `limit`: limit * max(RMS ||run - base||_2,
 * u * ||ref||_2). Tests check it stays far below ||ref||_2, or the criterion has no teeth. */
double nc_noise_allowed(const nc_spread *sp, nc_vec ref, size_t n, double limit);

/* ||a - b||_2 for two float32 runs; +INF when either has a non-finite element. */
double nc_diff2(const float *a, const float *b, size_t n);
/* Moves every element one ulp up or down (a fixed pseudo-random sign from (seed, i)); zeros and
 * non-finite values are left alone. */
void nc_perturb_ulp(float *v, size_t n, uint64_t seed);


/* fig <= limit and everything finite. */
int nc_ok(nc_res r, double limit);
/* Prints "  <what>: <fig> (limit <limit>) max|d| ... at [i]" plus a FAIL mark and the non-finite
 * count when it fails; returns nc_ok. */
int nc_report(const char *what, nc_res r, double limit);

/* The worst figure of a test, relative to its limit (different checks of one test may have
 * different limits, so the worst is the largest fig / limit). */
typedef struct nc_worst {
    double fig, limit, ratio;
    char what[128];
    int checked, failed;
} nc_worst;
void nc_worst_init(nc_worst *w);
/* Records r under `what`; prints nothing. Returns nc_ok(r, limit). */
int nc_worst_add(nc_worst *w, const char *what, nc_res r, double limit);
/* "<title>: worst <what> <fig> (limit <limit>, <ratio> of it), <checked> checked, <failed> failed" */
void nc_worst_print(const nc_worst *w, const char *title);

#endif
