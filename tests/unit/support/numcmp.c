/* The unit tests' shared numeric comparisons (numcmp.h). */
#include "tests/unit/support/numcmp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double nc_get(nc_vec v, size_t i) { return v.f64 ? ((const double *)v.p)[i] : (double)((const float *)v.p)[i]; }

double nc_max_abs(nc_vec v, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double x = nc_get(v, i);
        if (!isfinite(x)) return NAN;
        if (fabs(x) > m) m = fabs(x);
    }
    return m;
}

double nc_norm2(nc_vec v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double x = nc_get(v, i);
        if (!isfinite(x)) return NAN;
        s += x * x;
    }
    return sqrt(s);
}

/* Shared first pass: the max |d|, its index, and the non-finite count (the first one's index). */
static nc_res scan(nc_vec ours, nc_vec ref, size_t n) {
    nc_res r = {0};
    r.n = n;
    for (size_t i = 0; i < n; i++) {
        double a = nc_get(ours, i), b = nc_get(ref, i);
        if (!isfinite(a) || !isfinite(b)) {
            if (!r.nonfinite) r.at = i;
            r.nonfinite++;
            continue;
        }
        double d = fabs(a - b);
        if (d > r.max_abs) r.max_abs = d, r.at = r.nonfinite ? r.at : i;
    }
    return r;
}

nc_res nc_normwise(nc_vec ours, nc_vec ref, size_t n, double floor) {
    nc_res r = scan(ours, ref, n);
    double m = nc_max_abs(ref, n);
    r.scale = isnan(m) ? m : (m > floor ? m : floor);
    if (r.nonfinite || !(r.scale >= 0) || !isfinite(floor)) r.fig = INFINITY;
    else r.fig = r.scale > 0 ? r.max_abs / r.scale : (r.max_abs > 0 ? INFINITY : 0);
    return r;
}

nc_res nc_sumbound(nc_vec ours, nc_vec ref, nc_vec mag, size_t n) {
    nc_res r = scan(ours, ref, n);
    double worst = 0;
    for (size_t i = 0; i < n && !r.nonfinite; i++) {
        double d = fabs(nc_get(ours, i) - nc_get(ref, i)), m = nc_get(mag, i);
        if (!isfinite(m) || m < 0) {
            r.nonfinite++, r.at = i;
            break;
        }
        /* a sum of no terms (or of exact zeros) must be exact */
        double q = d == 0 ? 0 : (m > 0 ? d / (NC_U32 * m) : INFINITY);
        if (q > worst || isnan(q)) worst = q, r.at = i, r.scale = NC_U32 * m;
    }
    r.fig = r.nonfinite ? INFINITY : worst;
    return r;
}

nc_res nc_noise(nc_vec ours, nc_vec ref, size_t n, const nc_spread *sp) {
    nc_res r = scan(ours, ref, n);
    double d2 = 0;
    for (size_t i = 0; i < n && !r.nonfinite; i++) {
        double d = nc_get(ours, i) - nc_get(ref, i);
        d2 += d * d;
    }
    double s2 = nc_spread_rms(sp), sinf = nc_spread_rms_inf(sp);
    double f2 = NC_U32 * nc_norm2(ref, n), finf = NC_U32 * nc_max_abs(ref, n);
    double sc2 = s2 > f2 ? s2 : f2, scinf = sinf > finf ? sinf : finf;
    if (r.nonfinite || !isfinite(sc2) || !isfinite(scinf) || sp->n != n) {
        r.fig = INFINITY;
        r.scale = INFINITY;
        return r;
    }
    double q2 = sc2 > 0 ? sqrt(d2) / sc2 : (d2 > 0 ? INFINITY : 0);
    double qinf = scinf > 0 ? r.max_abs / scinf : (r.max_abs > 0 ? INFINITY : 0);
    r.fig = q2 > qinf ? q2 : qinf;
    r.scale = q2 > qinf ? sc2 : scinf;
    return r;
}

double nc_noise_allowed(const nc_spread *sp, nc_vec ref, size_t n, double limit) {
    double s2 = nc_spread_rms(sp), f2 = NC_U32 * nc_norm2(ref, n);
    return isfinite(s2) && isfinite(f2) ? limit * (s2 > f2 ? s2 : f2) : INFINITY;
}

double nc_diff2(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return sqrt(s);
}

void nc_perturb_ulp(float *v, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        if (v[i] == 0 || !isfinite(v[i])) continue;
        uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)i * 0xBF58476D1CE4E5B9ull;
        x ^= x >> 31;
        x *= 0x94D049BB133111EBull;
        x ^= x >> 29;
        v[i] = nextafterf(v[i], (x & 1) ? INFINITY : -INFINITY);
    }
}

void nc_spread_begin(nc_spread *s, const float *v, size_t n) {
    s->n = n;
    s->d2 = s->dinf2 = 0;
    s->runs = 0;
    s->base = malloc(n ? n * sizeof(float) : 1);
    if (s->base && v) memcpy(s->base, v, n * sizeof(float));
}

void nc_spread_add(nc_spread *s, const float *v) {
    double d = s->base && v ? nc_diff2(v, s->base, s->n) : INFINITY, m = isfinite(d) ? 0 : INFINITY;
    for (size_t i = 0; i < s->n && isfinite(d); i++) {
        double x = fabs((double)v[i] - (double)s->base[i]);
        if (x > m) m = x;
    }
    s->d2 += d * d;
    s->dinf2 += m * m;
    s->runs++;
}

double nc_spread_rms(const nc_spread *s) { return s->base && s->runs ? sqrt(s->d2 / s->runs) : INFINITY; }
double nc_spread_rms_inf(const nc_spread *s) { return s->base && s->runs ? sqrt(s->dinf2 / s->runs) : INFINITY; }

void nc_spread_free(nc_spread *s) {
    free(s->base);
    s->base = NULL;
}

int nc_ok(nc_res r, double limit) { return r.nonfinite == 0 && isfinite(r.fig) && r.fig <= limit; }

int nc_report(const char *what, nc_res r, double limit) {
    int ok = nc_ok(r, limit);
    if (r.nonfinite)
        printf("  %-40s FAIL: %zu non-finite value(s), first at [%zu] (of %zu)\n", what, r.nonfinite, r.at, r.n);
    else
        printf("  %-40s %.3g (limit %.3g) max|d| %.3g at [%zu] of %zu%s\n", what, r.fig, limit, r.max_abs, r.at, r.n,
               ok ? "" : "  FAIL");
    return ok;
}

void nc_worst_init(nc_worst *w) {
    memset(w, 0, sizeof *w);
    w->ratio = -1;
}

int nc_worst_add(nc_worst *w, const char *what, nc_res r, double limit) {
    int ok = nc_ok(r, limit);
    /* no limit (INFINITY): a figure printed for scale only; the largest figure is the worst */
    double q = r.nonfinite || !(limit >= 0) ? INFINITY
               : isinf(limit)               ? r.fig
               : limit == 0                 ? (r.fig == 0 ? 0 : INFINITY) /* exact results */
                                            : r.fig / limit;
    w->checked++;
    if (!ok) w->failed++;
    if (q > w->ratio) {
        w->ratio = q;
        w->fig = r.nonfinite ? INFINITY : r.fig;
        w->limit = limit;
        snprintf(w->what, sizeof w->what, "%s", what);
    }
    return ok;
}

void nc_worst_print(const nc_worst *w, const char *title) {
    if (isinf(w->limit))
        printf("%s: worst %s %.3g, %d checked\n", title, w->checked ? w->what : "-", w->fig, w->checked);
    else
        printf("%s: worst %s %.3g (limit %.3g, %.2f of it), %d checked, %d failed\n", title,
               w->checked ? w->what : "-", w->fig, w->limit, w->ratio < 0 ? 0 : w->ratio, w->checked, w->failed);
}
