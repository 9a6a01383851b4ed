/* Download progress: bytes, rate and ETA. On a terminal one line is rewritten in place several
 * times a second; in logs (not a tty) a plain line at most every 5 s, so logs stay readable. */
#include <string.h>

#include "kaggle/internal.h"

void fl_fmt_bytes(double b, char *out, size_t cap) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) b /= 1024, u++;
    snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

static void emit(fl_progress *p, double now, int final) {
    char done[32], total[32], rate[32], line[256];
    double dt = now - p->t0;
    double r = dt > 0 ? (double)(p->done - p->start) / dt : 0;
    fl_fmt_bytes((double)p->done, done, sizeof done);
    fl_fmt_bytes(r, rate, sizeof rate);
    if (p->total >= 0) {
        fl_fmt_bytes((double)p->total, total, sizeof total);
        double pct = p->total ? 100.0 * (double)p->done / (double)p->total : 100.0;
        double left = p->total > (int64_t)p->done ? (double)p->total - (double)p->done : 0;
        if (final)
            snprintf(line, sizeof line, "%s: %s in %.1fs, %s/s", p->label, done, dt, rate);
        else if (r > 0)
            snprintf(line, sizeof line, "%s: %s / %s (%.0f%%), %s/s, ETA %.0fs", p->label, done,
                     total, pct, rate, left / r);
        else
            snprintf(line, sizeof line, "%s: %s / %s (%.0f%%)", p->label, done, total, pct);
    } else {
        snprintf(line, sizeof line, "%s: %s%s, %s/s", p->label, done, final ? " done" : "", rate);
    }
    if (p->k->tty)
        fprintf(p->k->log, "\r\033[K%s%s", line, final ? "\n" : "");
    else
        fprintf(p->k->log, "%s\n", line);
    fflush(p->k->log);
    p->last = now;
    p->printed = 1;
}

void fl_progress_begin(fl_progress *p, fl_kaggle *k, const char *label, uint64_t start,
                       int64_t total) {
    memset(p, 0, sizeof *p);
    p->k = k;
    p->label = label;
    p->t0 = p->last = fl_now();
    p->start = p->done = start;
    p->total = total;
    if (k->o.progress && start && !k->tty) {
        char b[32];
        fl_fmt_bytes((double)start, b, sizeof b);
        fprintf(k->log, "%s: resuming after %s\n", label, b);
        fflush(k->log);
    }
}

void fl_progress_update(fl_progress *p, uint64_t done) {
    p->done = done;
    if (!p->k || !p->k->o.progress) return;
    double now = fl_now();
    if (now - p->last >= (p->k->tty ? 0.25 : 5.0)) emit(p, now, 0);
}

void fl_progress_end(fl_progress *p, int ok) {
    if (!p->k || !p->k->o.progress) return;
    if (ok)
        emit(p, fl_now(), 1);
    else if (p->printed && p->k->tty)
        fputc('\n', p->k->log);
}
