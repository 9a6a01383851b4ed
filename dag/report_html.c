#include "dag/report_html.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fl_html_free(fl_html *h) {
    free(h->p);
    memset(h, 0, sizeof *h);
}

static int grow(fl_html *h, size_t add) {
    if (h->oom) return -1;
    if (h->n + add + 1 <= h->cap) return 0;
    size_t cap = h->cap ? h->cap : 4096;
    while (cap < h->n + add + 1) cap *= 2;
    char *p = realloc(h->p, cap);
    if (!p) {
        h->oom = 1;
        return -1;
    }
    h->p = p;
    h->cap = cap;
    return 0;
}

void fl_html_rawn(fl_html *h, const char *s, size_t n) {
    if (!s || grow(h, n)) return;
    memcpy(h->p + h->n, s, n);
    h->n += n;
    h->p[h->n] = '\0';
}

void fl_html_raw(fl_html *h, const char *s) {
    if (s) fl_html_rawn(h, s, strlen(s));
}

void fl_html_printf(fl_html *h, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || grow(h, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(h->p + h->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    h->n += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one (overlong forms,
 * surrogates and code points past U+10FFFF included). */
static int utf8_len(const unsigned char *s) {
    unsigned c = s[0];
    int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (c < 0x80) return 1;
    if (!n || c > 0xF4) return 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0;  /* overlong */
    if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogates */
    if (c == 0xF0 && s[1] < 0x90) return 0;  /* overlong */
    if (c == 0xF4 && s[1] >= 0x90) return 0; /* > U+10FFFF */
    return n;
}

void fl_html_text(fl_html *h, const char *s) {
    if (!s) return;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        const char *rep = NULL;
        int n = 1;
        switch (*p) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default:
            if (*p < 0x20 && *p != '\n' && *p != '\t') rep = "\xEF\xBF\xBD"; /* XML forbids them */
            else if (*p == 0x7F) rep = "\xEF\xBF\xBD";
            else if (!(n = utf8_len(p))) rep = "\xEF\xBF\xBD", n = 1;
        }
        if (rep) fl_html_raw(h, rep);
        else fl_html_rawn(h, (const char *)p, (size_t)n);
        p += n;
    }
}

void fl_html_num(fl_html *h, const char *fmt, double v) {
    if (isnan(v)) fl_html_raw(h, "NaN");
    else if (isinf(v)) fl_html_raw(h, v > 0 ? "inf" : "-inf");
    else fl_html_printf(h, fmt, v);
}

void fl_html_secs(fl_html *h, double s) {
    if (!isfinite(s) || s < 0) fl_html_raw(h, "?");
    else if (s < 60) fl_html_printf(h, "%.2f s", s);
    else if (s < 3600) fl_html_printf(h, "%d min %02d s", (int)(s / 60), (int)fmod(s, 60));
    else fl_html_printf(h, "%d h %02d min", (int)(s / 3600), (int)fmod(s / 60, 60));
}

void fl_report_smooth(const double *y, size_t n, double alpha, double *out) {
    double acc = 0, wsum = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(y[i])) {
            out[i] = y[i];
            continue;
        }
        acc = acc * alpha + (1 - alpha) * y[i];
        wsum = wsum * alpha + (1 - alpha);
        out[i] = acc / wsum;
    }
}

void fl_html_base64(fl_html *h, const uint8_t *d, size_t len) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (grow(h, (len + 2) / 3 * 4)) return;
    char *o = h->p + h->n;
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        *o++ = tab[v >> 18], *o++ = tab[(v >> 12) & 63], *o++ = tab[(v >> 6) & 63], *o++ = tab[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < len ? (uint32_t)d[i + 1] << 8 : 0);
        *o++ = tab[v >> 18], *o++ = tab[(v >> 12) & 63];
        *o++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    h->n = (size_t)(o - h->p);
    h->p[h->n] = '\0';
}

/* ---------------------------------------------------------------- charts */

/* A "nice" tick step (1, 2, 5 x 10^k) giving about n ticks over span. */
static double nice_step(double span, int n) {
    double raw = span / n, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static void tick_label(fl_html *h, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0;
    if (fabs(v) >= 1e5 || (v != 0 && fabs(v) < 1e-3)) fl_html_printf(h, "%.1e", v);
    else if (step >= 1) fl_html_printf(h, "%.0f", v);
    else fl_html_printf(h, "%.*f", (int)ceil(-log10(step)), v);
}

void fl_html_chart(fl_html *h, const fl_chart *c) {
    int W = c->w > 0 ? c->w : 420, H = c->h > 0 ? c->h : 220;
    const double L = 56, R = 12, T = 34, B = 36;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    size_t finite = 0;
    for (size_t k = 0; k < c->ns; k++)
        for (size_t i = 0; i < c->s[k].n; i++) {
            double x = c->s[k].x[i], y = c->s[k].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            finite++;
            x0 = fmin(x0, x), x1 = fmax(x1, x), y0 = fmin(y0, y), y1 = fmax(y1, y);
        }
    if (finite && isfinite(c->mark_x)) x0 = fmin(x0, c->mark_x), x1 = fmax(x1, c->mark_x);
    fl_html_printf(h, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"%d\" "
                      "height=\"%d\" viewBox=\"0 0 %d %d\"", W, H, W, H);
    if (c->attrs) fl_html_printf(h, " %s", c->attrs);
    fl_html_raw(h, "><title>");
    fl_html_text(h, c->title);
    fl_html_raw(h, "</title>");
    fl_html_printf(h, "<text class=\"ctitle\" x=\"%g\" y=\"14\">", L);
    fl_html_text(h, c->title);
    fl_html_raw(h, "</text>");
    fl_html_printf(h, "<rect class=\"frame\" x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\"/>", L, T,
                   W - L - R, H - T - B);
    /* legend: a row under the title, right-aligned */
    double lx = W - R;
    for (size_t k = c->ns; k-- > 0;) {
        const fl_series *s = &c->s[k];
        size_t good = 0, bad = 0;
        for (size_t i = 0; i < s->n; i++) /* a non-finite x is no point at all (not measured) */
            if (isfinite(s->x[i])) isfinite(s->y[i]) ? good++ : bad++;
        fl_html_printf(h, "<text class=\"legend %s\" x=\"%g\" y=\"28\" text-anchor=\"end\">",
                       s->cls ? s->cls : "s0", lx);
        fl_html_text(h, s->name);
        if (!good) fl_html_raw(h, " (no data)");
        else if (bad) fl_html_printf(h, " (%zu NaN)", bad);
        fl_html_raw(h, "</text>");
        lx -= 6.5 * (double)(strlen(s->name ? s->name : "") + (good ? (bad ? 8 : 0) : 10)) + 12;
    }
    if (!finite) {
        fl_html_printf(h, "<text class=\"nodata\" x=\"%g\" y=\"%g\" text-anchor=\"middle\">no data"
                          "</text></svg>", (L + W - R) / 2, (T + H - B) / 2);
        return;
    }
    /* A span below the values' own float resolution counts as none: its tick step would not
     * advance the tick loop (v + step == v) */
    if (x1 - x0 <= 1e-9 * fmax(fabs(x0), fabs(x1))) x0 -= 0.5, x1 += 0.5;
    if (y1 - y0 <= 1e-9 * fmax(fabs(y0), fabs(y1))) {
        double pad = fabs(y0) > 0 ? fabs(y0) * 0.1 : 0.5;
        y0 -= pad, y1 += pad;
    } else {
        double pad = (y1 - y0) * 0.05;
        y0 -= pad, y1 += pad;
    }
    double pw = W - L - R, ph = H - T - B;
#define PX(x) (L + ((x) - x0) / (x1 - x0) * pw)
#define PY(y) (T + ph - ((y) - y0) / (y1 - y0) * ph)
    double ys = nice_step(y1 - y0, 4), xs = nice_step(x1 - x0, 5);
    /* whole-number x (epochs): no ticks between them */
    int whole = 1;
    for (size_t k = 0; k < c->ns && whole; k++)
        for (size_t i = 0; i < c->s[k].n && whole; i++)
            whole = !isfinite(c->s[k].x[i]) || c->s[k].x[i] == floor(c->s[k].x[i]);
    if (whole && xs < 1) xs = 1;
    /* ticks by count, never by accumulation: at most a few dozen whatever the values */
    for (int t = 0; t < 64; t++) {
        double v = (ceil(y0 / ys) + t) * ys;
        if (v > y1 + ys * 1e-9) break;
        fl_html_printf(h, "<line class=\"grid\" x1=\"%g\" x2=\"%g\" y1=\"%.1f\" y2=\"%.1f\"/>"
                          "<text class=\"tick\" x=\"%g\" y=\"%.1f\" text-anchor=\"end\">",
                       L, W - R, PY(v), PY(v), L - 4, PY(v) + 4);
        tick_label(h, v, ys);
        fl_html_raw(h, "</text>");
    }
    for (int t = 0; t < 64; t++) {
        double v = (ceil(x0 / xs) + t) * xs;
        if (v > x1 + xs * 1e-9) break;
        fl_html_printf(h, "<text class=\"tick\" x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">", PX(v),
                       H - B + 14);
        tick_label(h, v, xs);
        fl_html_raw(h, "</text>");
    }
    if (c->xlabel) {
        fl_html_printf(h, "<text class=\"axis\" x=\"%g\" y=\"%d\" text-anchor=\"middle\">",
                       L + pw / 2, H - 4);
        fl_html_text(h, c->xlabel);
        fl_html_raw(h, "</text>");
    }
    if (c->ylabel) {
        fl_html_printf(h, "<text class=\"axis\" x=\"12\" y=\"%g\" text-anchor=\"middle\" "
                          "transform=\"rotate(-90 12 %g)\">", T + ph / 2, T + ph / 2);
        fl_html_text(h, c->ylabel);
        fl_html_raw(h, "</text>");
    }
    if (isfinite(c->mark_x)) {
        fl_html_printf(h, "<line class=\"mark\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%g\" y2=\"%g\"/>"
                          "<text class=\"marklabel\" x=\"%.1f\" y=\"%g\">",
                       PX(c->mark_x), PX(c->mark_x), T, T + ph, PX(c->mark_x) + 3, T + 12);
        fl_html_text(h, c->mark_label);
        fl_html_raw(h, "</text>");
    }
    for (size_t k = 0; k < c->ns; k++) {
        const fl_series *s = &c->s[k];
        size_t good = 0;
        for (size_t i = 0; i < s->n; i++) good += isfinite(s->x[i]) && isfinite(s->y[i]);
        fl_html_printf(h, "<path class=\"series %s\" data-points=\"%zu\" data-missing=\"%zu\" d=\"",
                       s->cls ? s->cls : "s0", good, s->n - good);
        int pen = 0;
        for (size_t i = 0; i < s->n; i++) {
            if (!isfinite(s->x[i])) continue;
            if (!isfinite(s->y[i])) {
                pen = 0; /* a gap where the value is missing */
                continue;
            }
            fl_html_printf(h, "%s%.1f %.1f", pen ? " L" : (i ? " M" : "M"), PX(s->x[i]), PY(s->y[i]));
            pen = 1;
        }
        fl_html_raw(h, "\"><title>");
        fl_html_text(h, s->name);
        fl_html_raw(h, "</title></path>");
        if (s->n <= 80)
            for (size_t i = 0; i < s->n; i++) {
                if (!isfinite(s->x[i]) || !isfinite(s->y[i])) continue;
                fl_html_printf(h, "<circle class=\"pt %s\" cx=\"%.1f\" cy=\"%.1f\" r=\"2.2\"><title>",
                               s->cls ? s->cls : "s0", PX(s->x[i]), PY(s->y[i]));
                fl_html_text(h, s->name);
                fl_html_printf(h, " %g: %g</title></circle>", s->x[i], s->y[i]);
            }
    }
#undef PX
#undef PY
    fl_html_raw(h, "</svg>");
}

void fl_html_bars(fl_html *h, const char *title, const char *attrs, const char *const *labels,
                  const double *v, const double *n, size_t count) {
    const int LW = 170, BW = 220, RH = 18, T = 22;
    int H = T + (int)count * RH + 6, W = LW + BW + 110;
    fl_html_printf(h, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"bars\" width=\"%d\" "
                      "height=\"%d\" viewBox=\"0 0 %d %d\"", W, H, W, H);
    if (attrs) fl_html_printf(h, " %s", attrs);
    fl_html_raw(h, "><title>");
    fl_html_text(h, title);
    fl_html_raw(h, "</title><text class=\"ctitle\" x=\"0\" y=\"14\">");
    fl_html_text(h, title);
    fl_html_raw(h, "</text>");
    if (!count)
        fl_html_printf(h, "<text class=\"nodata\" x=\"%d\" y=\"14\">no data</text>", LW);
    for (size_t i = 0; i < count; i++) {
        double y = T + (double)i * RH;
        fl_html_printf(h, "<text class=\"blabel\" x=\"%d\" y=\"%g\" text-anchor=\"end\">", LW - 6,
                       y + 13);
        fl_html_text(h, labels[i]);
        fl_html_raw(h, "</text>");
        double x = v[i];
        if (isfinite(x)) {
            double w = fmax(0, fmin(1, x)) * BW;
            fl_html_printf(h, "<rect class=\"bar\" x=\"%d\" y=\"%g\" width=\"%.1f\" height=\"%d\">"
                              "<title>", LW, y + 2, w, RH - 4);
            fl_html_text(h, labels[i]);
            fl_html_printf(h, " %.4f</title></rect>", x);
        }
        fl_html_printf(h, "<text class=\"bval%s\" x=\"%d\" y=\"%g\">", isfinite(x) ? "" : " bad",
                       LW + BW + 6, y + 13);
        fl_html_num(h, "%.3f", x);
        if (n && n[i] >= 0) fl_html_printf(h, " (n %g)", n[i]);
        fl_html_raw(h, "</text>");
    }
    fl_html_raw(h, "</svg>");
}
