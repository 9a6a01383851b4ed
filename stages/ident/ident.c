/* Candidates, new_individual insertion, MAP@5 and threshold search (ident.h). */
#include "stages/ident/ident.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/knn.h"

void fl_ident_candidates(const int32_t *idx, const float *sim, int64_t nq, int k,
                         const int32_t *gind, fl_ident_cand *out) {
    for (int64_t q = 0; q < nq; q++) {
        fl_ident_cand *c = &out[q];
        const int32_t *ix = idx + (size_t)q * k;
        const float *sv = sim + (size_t)q * k;
        c->n = 0;
        c->top1 = k > 0 ? ix[0] : -1;
        /* Neighbours come best first: an individual's first appearance is its max. */
        for (int j = 0; j < k && ix[j] >= 0 && c->n < FL_MAP_K; j++) {
            int32_t id = gind[ix[j]], dup = 0;
            for (int t = 0; t < c->n; t++)
                dup |= c->ind[t] == id;
            if (!dup) c->ind[c->n] = id, c->conf[c->n] = sv[j], c->n++;
        }
    }
}

static int has(const int32_t *lab, int n, int32_t v) {
    for (int i = 0; i < n; i++)
        if (lab[i] == v) return 1;
    return 0;
}

int fl_ident_answer(const fl_ident_cand *c, double t, const int32_t *fill, int nfill,
                    int32_t out[FL_MAP_K]) {
    int n = 0;
    if (c->n == 0 || c->conf[0] < (float)t) out[n++] = FL_IDENT_NEW;
    for (int i = 0; i < c->n && n < FL_MAP_K; i++) {
        out[n++] = c->ind[i];
        if (n == 1) out[n++] = FL_IDENT_NEW;
    }
    for (int i = 0; i < nfill && n < FL_MAP_K; i++)
        if (!has(out, n, fill[i])) out[n++] = fill[i];
    return n;
}

double fl_ident_ap(int32_t truth, const int32_t *lab, int n) {
    for (int i = 0; i < n && i < FL_MAP_K; i++)
        if (lab[i] == truth) return 1.0 / (i + 1);
    return 0.0;
}

void fl_ident_query(const fl_ident_cand *c, int32_t truth, const int32_t *fill, int nfill,
                    fl_ident_q *q) {
    int32_t lab[FL_MAP_K];
    int n = fl_ident_answer(c, INFINITY, fill, nfill, lab);
    q->ap_first = fl_ident_ap(truth, lab, n);
    n = fl_ident_answer(c, -INFINITY, fill, nfill, lab);
    q->ap_second = fl_ident_ap(truth, lab, n);
    q->top1 = c->n ? c->conf[0] : -INFINITY;
    q->is_new = truth == FL_IDENT_NEW;
}

int fl_ident_grid_n(double step) {
    return (int)floor(1.0 / step + 1e-9) + 1;
}

double fl_ident_grid_search(const fl_ident_q *q, const uint8_t *sel, int64_t n, double step,
                            double *best_map) {
    int ng = fl_ident_grid_n(step);
    double best = -1, best_t = 0;
    int64_t cnt = 0;
    for (int64_t i = 0; i < n; i++)
        cnt += !sel || sel[i];
    for (int g = 0; g < ng && cnt > 0; g++) {
        double t = g * step, s = 0;
        for (int64_t i = 0; i < n; i++)
            if (!sel || sel[i]) s += fl_ident_q_ap(&q[i], t);
        s /= (double)cnt;
        if (s > best) best = s, best_t = t; /* strict: ties keep the smaller t */
    }
    if (best_map) *best_map = cnt > 0 ? best : 0;
    return best_t;
}

int fl_ident_species_thresholds(const fl_ident_q *q, const int32_t *sp, int64_t n, int nsp,
                                int min_n, double step, double global, double *thr, uint8_t *own,
                                fl_err *e) {
    uint8_t *sel = malloc((size_t)(n > 0 ? n : 1));
    int64_t *cnt = calloc((size_t)(nsp > 0 ? nsp : 1), sizeof *cnt);
    if (!sel || !cnt) {
        free(sel), free(cnt);
        return fl_errf(e, "species thresholds: out of memory");
    }
    for (int64_t i = 0; i < n; i++)
        if (sp[i] >= 0 && sp[i] < nsp) cnt[sp[i]]++;
    for (int s = 0; s < nsp; s++) {
        thr[s] = global, own[s] = 0;
        if (cnt[s] < min_n || cnt[s] == 0) continue;
        for (int64_t i = 0; i < n; i++)
            sel[i] = sp[i] == s;
        thr[s] = fl_ident_grid_search(q, sel, n, step, NULL);
        own[s] = 1;
    }
    free(sel), free(cnt);
    return 0;
}

void fl_ident_score(const fl_ident_q *q, const double *thr_of, int64_t n, fl_ident_map *m) {
    double s = 0, sk = 0, sn = 0;
    memset(m, 0, sizeof *m);
    for (int64_t i = 0; i < n; i++) {
        double ap = fl_ident_q_ap(&q[i], thr_of[i]);
        s += ap;
        if (q[i].is_new)
            sn += ap, m->n_new++;
        else
            sk += ap, m->n_known++;
    }
    m->n = n;
    m->map5 = n ? s / (double)n : 0;
    m->map5_known = m->n_known ? sk / (double)m->n_known : 0;
    m->map5_new = m->n_new ? sn / (double)m->n_new : 0;
}

int fl_ident_oof_eval(const float *emb, int64_t n, int64_t d, const int32_t *ind,
                      const uint8_t *query, int k, double grid_step, fl_ident_oof *out, fl_err *e) {
    memset(out, 0, sizeof *out);
    if (!(grid_step > 0 && grid_step <= 1))
        return fl_errf(e, "OOF evaluation: grid step %g outside (0, 1]", grid_step);
    int32_t nind = 0;
    int64_t nq = 0;
    for (int64_t r = 0; r < n; r++) {
        if (ind[r] < 0)
            return fl_errf(e, "OOF evaluation: row %lld has individual %d", (long long)r, ind[r]);
        if (ind[r] + 1 > nind) nind = ind[r] + 1;
        nq += query[r] != 0;
    }
    if (nq == 0) return 0;
    int64_t *cnt = calloc((size_t)nind + 1, sizeof *cnt), *ex = malloc((size_t)nq * sizeof *ex);
    float *Q = malloc((size_t)nq * (size_t)d * sizeof *Q),
          *sim = malloc((size_t)nq * k * sizeof *sim);
    int32_t *idx = malloc((size_t)nq * k * sizeof *idx);
    fl_ident_cand *c = malloc((size_t)nq * sizeof *c);
    fl_ident_q *qs = malloc((size_t)nq * sizeof *qs);
    double *thr = malloc((size_t)nq * sizeof *thr);
    int rc = -1;
    if (!cnt || !ex || !Q || !sim || !idx || !c || !qs || !thr) {
        fl_errf(e, "OOF evaluation: out of memory for %lld queries", (long long)nq);
        goto done;
    }
    int64_t j = 0;
    for (int64_t r = 0; r < n; r++) {
        cnt[ind[r]]++;
        if (!query[r]) continue;
        memcpy(Q + (size_t)j * d, emb + (size_t)r * d, (size_t)d * sizeof *Q);
        ex[j++] = r;
    }
    fl_knn_args a = {.k = k, .exclude = ex};
    if (fl_knn_topk(Q, nq, emb, n, d, &a, idx, sim, e) != 0) goto done;
    fl_ident_candidates(idx, sim, nq, k, ind, c);
    for (j = 0; j < nq; j++) {
        int32_t i = ind[ex[j]];
        fl_ident_query(&c[j], cnt[i] > 1 ? i : FL_IDENT_NEW, NULL, 0, &qs[j]);
    }
    double t = fl_ident_grid_search(qs, NULL, nq, grid_step, NULL);
    for (j = 0; j < nq; j++)
        thr[j] = t;
    fl_ident_map m;
    fl_ident_score(qs, thr, nq, &m);
    out->map5 = m.map5, out->map5_known = m.map5_known, out->map5_new = m.map5_new;
    out->threshold = t, out->n_query = nq, out->n_known = m.n_known, out->n_new = m.n_new;
    rc = 0;
done:
    free(cnt), free(ex), free(Q), free(sim), free(idx), free(c), free(qs), free(thr);
    return rc;
}
