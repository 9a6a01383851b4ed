/* Stage "knn": the folds' embeddings -> out-of-fold calibration of new_individual -> the fold
 * ensemble's submission.
 *
 * Inputs: data (Kaggle layout: sample_submission.csv lists the test images), folds (folds.csv)
 * and embed0 .. embed{K-1} (K = folds.csv's fold count; each holds embeddings/). For fold k the
 * queries are the train images of fold k, the gallery every other train image, both embedded by
 * fold k's model (which never saw fold k): a query whose individual is not in the gallery plays
 * new_individual. The pooled OOF picks the threshold (global, per species when configured);
 * the test images are then ranked against the whole train gallery with the folds ensembled.
 * Outputs submission.csv (validated) and cv.json. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codeid/knn.h"
#include "runtime/knn.h"
#include "stages/api/stage.h"
#include "stages/ident/embeddings.h"
#include "stages/ident/folds.h"
#include "stages/ident/ident.h"
#include "stages/ident/knn_input.h"
#include "stages/ident/pseudo.h"
#include "stages/ident/stages.h"
#include "stages/labels/labels.h"
#include "stages/synth/stages.h"

#define KNN_MAX_FOLDS FL_FOLDS_MAX_K

typedef fl_knn_in knn_in;

const fl_cfg_field fl_knn_schema[] = {
    {"knn", FL_CFG_OBJ, 0, "cosine kNN on the folds' embeddings, new_individual calibrated OOF", 0,
     0},
    {"knn.k", FL_CFG_INT, 0, "neighbours per query (default 100)", 1, 100000},
    {"knn.ensemble", FL_CFG_STR, 0,
     "fold ensemble for the test: embeddings (mean of normalized embeddings, renormalized; "
     "default) or similarity (mean of the per-fold cosine similarities)",
     0, 0},
    {"knn.grid_step", FL_CFG_NUM, 0, "threshold grid step over [0, 1] (default 0.01)", 1e-4, 1},
    {"knn.per_species", FL_CFG_BOOL, 0, "a threshold per species (default false)", 0, 0},
    {"knn.species_min", FL_CFG_INT, 0,
     "validation images a species needs for its own threshold (default 50)", 1, 1e9},
    {"knn.pseudo_gallery", FL_CFG_BOOL, 0,
     "in a pseudo round, the pseudo-labelled test images join the gallery (default true)", 0, 0},
    {"knn.threshold", FL_CFG_NUM, 0,
     "fixed new_individual threshold for the submission (default: calibrated OOF)", -1, 1},
    {NULL, 0, 0, NULL, 0, 0},
};

typedef struct knn_cfg {
    int k, per_species, species_min, has_threshold, sim_ensemble, pseudo_gallery;
    double grid_step, threshold;
} knn_cfg;

/* Everything the stage reads, with the mapping of embedding rows to folds/sample rows. */




static int read_cfg(fl_stage_ctx *c, knn_cfg *o, fl_err *e) {
    *o = (knn_cfg){.k = FL_KNN_DEFAULT_K, .grid_step = 0.01, .species_min = 50,
                   .pseudo_gallery = 1};
    fl_err none = {{0}};
    const cJSON *sec = fl_stage_cfg(c, "knn", &none); /* absent: defaults */
    if (!sec && strstr(none.msg, "programming error")) return fl_errf(e, "%s", none.msg);
    if (!sec) return 0;
    const cJSON *v;
    /* The loader checks types and ranges; checked again for contexts built without it. */
    if ((v = cJSON_GetObjectItemCaseSensitive(sec, "k"))) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
            v->valuedouble > 100000)
            return fl_errf(e, "knn.k: must be an integer in [1, 100000]");
        o->k = (int)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(sec, "species_min"))) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
            v->valuedouble > 1e9)
            return fl_errf(e, "knn.species_min: must be an integer >= 1");
        o->species_min = (int)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(sec, "grid_step"))) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 1e-4 && v->valuedouble <= 1))
            return fl_errf(e, "knn.grid_step: must be a number in [0.0001, 1]");
        o->grid_step = v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(sec, "threshold"))) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= -1 && v->valuedouble <= 1))
            return fl_errf(e, "knn.threshold: must be a number in [-1, 1]");
        o->has_threshold = 1, o->threshold = v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(sec, "per_species"))) {
        if (!cJSON_IsBool(v)) return fl_errf(e, "knn.per_species: must be true or false");
        o->per_species = cJSON_IsTrue(v);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(sec, "pseudo_gallery"))) {
        if (!cJSON_IsBool(v)) return fl_errf(e, "knn.pseudo_gallery: must be true or false");
        o->pseudo_gallery = cJSON_IsTrue(v);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(sec, "ensemble"))) {
        if (!cJSON_IsString(v) ||
            (strcmp(v->valuestring, "embeddings") && strcmp(v->valuestring, "similarity")))
            return fl_errf(e, "knn.ensemble: must be \"embeddings\" or \"similarity\"");
        o->sim_ensemble = v->valuestring[0] == 's';
    }
    return 0;
}






/* Copies rows rows[0..n-1] of m (d wide) into a fresh matrix. */
static float *gather(const float *m, int64_t d, const int64_t *rows, int64_t n) {
    float *x = malloc(((size_t)n + 1) * (size_t)d * sizeof *x);
    if (x)
        for (int64_t i = 0; i < n; i++)
            memcpy(x + (size_t)i * d, m + (size_t)rows[i] * d, (size_t)d * sizeof *x);
    return x;
}

/* The OOF queries of all folds, fold by fold: q[off[k] .. off[k+1]-1] belong to fold k. */
typedef struct oof {
    fl_ident_q *q;
    int32_t *sp;
    int32_t *row, *top; /* folds.csv row of the query; its top-1 individual (-1: none) */
    float *conf;        /* the top-1 confidence */
    uint8_t *hit;       /* the top-1 is the query's individual (never for a new one) */
    int64_t n, off[KNN_MAX_FOLDS + 1];
} oof;

static void oof_free(oof *o) {
    free(o->q), free(o->sp), free(o->row), free(o->top), free(o->conf), free(o->hit);
}

static int run_oof(fl_stage_ctx *c, const knn_in *in, const knn_cfg *o, oof *out, fl_err *e) {
    int64_t ntr = in->ntr, d = in->E[0].d;
    int k = o->k < ntr ? o->k : (int)ntr; /* never more neighbours than train images */
    out->q = malloc(((size_t)ntr + 1) * sizeof *out->q);
    out->sp = malloc(((size_t)ntr + 1) * sizeof *out->sp);
    out->row = malloc(((size_t)ntr + 1) * sizeof *out->row);
    out->top = malloc(((size_t)ntr + 1) * sizeof *out->top);
    out->conf = malloc(((size_t)ntr + 1) * sizeof *out->conf);
    out->hit = malloc(((size_t)ntr + 1) * sizeof *out->hit);
    int64_t *qr = malloc(((size_t)ntr + 1) * sizeof *qr),
            *gr = malloc(((size_t)ntr + in->npl + 1) * sizeof *gr);
    int64_t ngal = ntr + in->npl; /* train rows, then the pseudo-labelled test rows */
    int32_t *gind = malloc(((size_t)ngal + 1) * sizeof *gind),
            *qf = malloc(((size_t)ntr + 1) * sizeof *qf);
    /* rows per individual over all embedded train images, and each query's own gallery row */
    int32_t *nrows = calloc((size_t)in->nind + 1, sizeof *nrows);
    int64_t *self = malloc(((size_t)ntr + 1) * sizeof *self);
    int32_t *idx = NULL;
    float *sim = NULL, *Q = NULL, *G = NULL;
    fl_ident_cand *cand = NULL;
    int rc = -1;
    if (!out->q || !out->sp || !out->row || !out->top || !out->conf || !out->hit || !qr || !gr ||
        !gind || !qf || !nrows || !self) {
        fl_errf(e, "knn: out of memory");
        goto done;
    }
    out->n = 0;
    for (int64_t i = 0; i < ntr; i++) nrows[in->ind[in->tr_f[i]]]++;
    for (int64_t j = 0; j < in->npl; j++) nrows[in->pl_ind[j]]++; /* a gallery row as any */
    /* Fold f's validation images are ranked by fold f's model against every other train image
     * (the query itself excluded), as a test image is against the whole train set: the truth is
     * the individual when another train image has it, else new_individual. With folds grouped by
     * individual the matches come from the rest of the query's own fold (unseen by the model),
     * with folds by image mostly from the training part. */
    for (int f = 0; f < in->K; f++) {
        out->off[f] = out->n;
        int64_t nq = 0, ng = 0;
        for (int64_t i = 0; i < ntr; i++) {
            int32_t fr = in->tr_f[i];
            if (in->fold[fr] == f) qr[nq] = in->tr_row[i], qf[nq] = fr, self[nq++] = ng;
            gr[ng] = in->tr_row[i], gind[ng++] = in->ind[fr];
        }
        for (int64_t j = 0; j < in->npl; j++)
            gr[ng] = in->pl_row[j], gind[ng++] = in->pl_ind[j];
        if (nq == 0) {
            fl_stage_log(c, "fold %d: no embedded validation images", f);
            continue;
        }
        free(Q), free(G), free(idx), free(sim), free(cand);
        Q = gather(in->E[f].m, d, qr, nq), G = gather(in->E[f].m, d, gr, ng);
        idx = malloc((size_t)nq * k * sizeof *idx), sim = malloc((size_t)nq * k * sizeof *sim);
        cand = malloc((size_t)nq * sizeof *cand);
        if (!Q || !G || !idx || !sim || !cand) {
            fl_errf(e, "knn: out of memory");
            goto done;
        }
        fl_knn_args a = {.k = k, .threads = fl_stage_threads(c), .exclude = self};
        if (fl_knn_topk(Q, nq, G, ng, d, &a, idx, sim, e) != 0) goto done;
        fl_ident_candidates(idx, sim, nq, k, gind, cand);
        for (int64_t j = 0; j < nq; j++) {
            int32_t t = in->ind[qf[j]];
            fl_ident_query(&cand[j], nrows[t] > 1 ? t : FL_IDENT_NEW, in->fill, in->nfill,
                           &out->q[out->n]);
            out->row[out->n] = qf[j];
            out->top[out->n] = cand[j].n > 0 ? cand[j].ind[0] : -1;
            out->conf[out->n] = cand[j].n > 0 ? cand[j].conf[0] : -INFINITY;
            out->hit[out->n] = cand[j].n > 0 && nrows[t] > 1 && cand[j].ind[0] == t;
            /* the species a test image gets: its nearest neighbour's */
            out->sp[out->n++] = idx[(size_t)j * k] >= 0 ? fl_knn_gallery_species(in, idx[(size_t)j * k]) : in->sp[qf[j]];
        }
    }
    out->off[in->K] = out->n;
    rc = 0;
done:
    free(qr), free(gr), free(gind), free(qf), free(nrows), free(self), free(idx), free(sim), free(Q), free(G);
    free(cand);
    return rc;
}

/* For the run report (neighbours.json): a few test images spread over the list, each with its
 * 5 nearest train images (gallery rows of idx/sim, best first; pseudo-labelled test rows of the
 * gallery are passed over). */
#define KNN_REPORT_QUERIES 6
static void note_neighbours(const knn_in *in, const int32_t *idx, const float *sim, int k,
                            cJSON *out) {
    int64_t nq = in->nte < KNN_REPORT_QUERIES ? in->nte : KNN_REPORT_QUERIES;
    for (int64_t q = 0; out && q < nq; q++) {
        int64_t i = q * in->nte / nq;
        cJSON *o = cJSON_CreateObject(), *nb = o ? cJSON_AddArrayToObject(o, "neighbours") : NULL;
        if (!nb || !cJSON_AddItemToArray(out, o)) {
            cJSON_Delete(o);
            return;
        }
        cJSON_AddStringToObject(o, "image", in->sample.image[in->te_s[i]]);
        for (int r = 0, got = 0; r < k && got < FL_MAP_K; r++) {
            int32_t g = idx[(size_t)i * k + r];
            cJSON *n = g >= 0 && g < in->ntr ? cJSON_CreateObject() : NULL;
            if (!n) continue;
            got++;
            cJSON_AddStringToObject(n, "image", in->img[in->tr_f[g]]);
            cJSON_AddStringToObject(n, "individual_id", in->ids[in->ind[in->tr_f[g]]]);
            cJSON_AddNumberToObject(n, "similarity", sim[(size_t)i * k + r]);
            cJSON_AddItemToArray(nb, n);
        }
    }
}

/* The test images' candidates with the folds ensembled, against every embedded train image
 * (and the pseudo-labelled test images of a later round). */
static int run_test(fl_stage_ctx *c, const knn_in *in, const knn_cfg *o, fl_ident_cand *cand,
                    cJSON *neighbours, fl_err *e) {
    int64_t d = in->E[0].d, nte = in->nte, ntr = in->ntr, ng = ntr + in->npl;
    int K = in->K, k = o->k < ntr ? o->k : (int)ntr; /* never more neighbours than train images */
    int32_t *gind = malloc(((size_t)ng + 1) * sizeof *gind);
    int64_t *grow = malloc(((size_t)ng + 1) * sizeof *grow); /* train rows, then pseudo rows */
    int32_t *idx = malloc(((size_t)nte * k + 1) * sizeof *idx);
    float *sim = malloc(((size_t)nte * k + 1) * sizeof *sim), *mean = NULL;
    float *Qs[KNN_MAX_FOLDS] = {0}, *Gs[KNN_MAX_FOLDS] = {0};
    int np = o->sim_ensemble ? K : 1, rc = -1;
    if (!gind || !grow || !idx || !sim) {
        fl_errf(e, "knn: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < ntr; i++)
        gind[i] = in->ind[in->tr_f[i]], grow[i] = in->tr_row[i];
    for (int64_t j = 0; j < in->npl; j++)
        gind[ntr + j] = in->pl_ind[j], grow[ntr + j] = in->pl_row[j];
    if (o->sim_ensemble) {
        for (int f = 0; f < K; f++) {
            Qs[f] = gather(in->E[f].m, d, in->te_row, nte);
            Gs[f] = gather(in->E[f].m, d, grow, ng);
            if (!Qs[f] || !Gs[f]) {
                fl_errf(e, "knn: out of memory");
                goto done;
            }
        }
    } else {
        size_t nm = (size_t)in->E[0].n * (size_t)d;
        mean = calloc(nm + 1, sizeof *mean);
        if (!mean) {
            fl_errf(e, "knn: out of memory");
            goto done;
        }
        for (int f = 0; f < K; f++)
            for (size_t j = 0; j < nm; j++)
                mean[j] += in->E[f].m[j];
        int64_t z = fl_knn_normalize_rows(mean, in->E[0].n, d);
        if (z >= 0) {
            fl_errf(e, "knn: the folds' embeddings of '%s' (row %lld) cancel out: their mean is 0",
                    in->E[0].image[z], (long long)z);
            goto done;
        }
        Qs[0] = gather(mean, d, in->te_row, nte), Gs[0] = gather(mean, d, grow, ng);
        if (!Qs[0] || !Gs[0]) {
            fl_errf(e, "knn: out of memory");
            goto done;
        }
    }
    /* a pseudo-labelled test image never finds itself */
    fl_knn_args a = {.k = k, .threads = fl_stage_threads(c), .exclude = in->te_excl};
    if (fl_knn_topk_multi((const float *const *)Qs, (const float *const *)Gs, np, nte, ng, d, &a,
                          idx, sim, e) != 0)
        goto done;
    fl_ident_candidates(idx, sim, nte, k, gind, cand);
    note_neighbours(in, idx, sim, k, neighbours);
    rc = 0;
done:
    for (int f = 0; f < KNN_MAX_FOLDS; f++)
        free(Qs[f]), free(Gs[f]);
    free(gind), free(grow), free(idx), free(sim), free(mean);
    return rc;
}

/* Writes the submission and reads it back through the competition validator. */
static int write_checked(const knn_in *in, const char *path, const char *(*ans)[FL_MAP_K],
                         fl_err *e) {
    if (fl_submission_write(path, in->sample.n, in->sample.image,
                            (const char *const(*)[FL_MAP_K])ans, e) != 0)
        return fl_errprefix(e, "internal check of the answer (a bug, not bad input)");
    fl_strmap known;
    if (fl_strmap_init(&known, (size_t)in->nind + 1, e) != 0) return -1;
    for (int i = 0; i < in->nind; i++)
        fl_strmap_put(&known, in->ids[i], i);
    fl_submission back;
    int rc = fl_submission_read(path, &back, e);
    if (rc == 0) {
        rc = fl_submission_validate(&back, in->sample.image, in->sample.n, &known, e);
        fl_submission_free(&back);
    }
    fl_strmap_free(&known);
    return rc ? fl_errprefix(e, "internal check of the answer (a bug, not bad input)") : 0;
}

/* The top-1 of every OOF query and every test image, for the pseudo stage (stages/pseudo.c):
 *   oof.csv          image,fold,individual_id,confidence,hit   (hit: the top-1 is the truth)
 *   predictions.csv  image,individual_id,species,confidence    (species of the nearest row)
 * individual_id is empty when a query has no neighbour. Names are plain (checked by the
 * readers of train.csv and the sample submission), so no field needs quoting. */
static int write_top1(const knn_in *in, const oof *oo, const fl_ident_cand *cand, const char *dir,
                      fl_err *e) {
    for (int which = 0; which < 2; which++) {
        char *buf = NULL, *path = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f) return fl_errf(e, "knn: out of memory");
        if (which == 0) {
            fputs("image,fold,individual_id,confidence,hit\n", f);
            for (int64_t i = 0; i < oo->n; i++) {
                int32_t r = oo->row[i];
                fprintf(f, "%s,%d,%s,%.9g,%d\n", in->img[r], in->fold[r],
                        oo->top[i] >= 0 ? in->ids[oo->top[i]] : "",
                        oo->top[i] >= 0 ? (double)oo->conf[i] : 0.0, oo->hit[i]);
            }
        } else {
            fputs("image,individual_id,species,confidence\n", f);
            for (int64_t i = 0; i < in->nte; i++) {
                const fl_ident_cand *c = &cand[i];
                int g = c->top1 >= 0 ? fl_knn_gallery_species(in, c->top1) : -1;
                fprintf(f, "%s,%s,%s,%.9g\n", in->sample.image[in->te_s[i]],
                        c->n > 0 ? in->ids[c->ind[0]] : "", g >= 0 ? in->spn[g] : "",
                        c->n > 0 ? (double)c->conf[0] : 0.0);
            }
        }
        int bad = ferror(f);
        fclose(f);
        path = fl_strdupf("%s/%s", dir, which == 0 ? FL_KNN_OOF_FILE : FL_KNN_PRED_FILE);
        int rc = bad || !path ? fl_errf(e, "knn: out of memory")
                              : fl_write_file_atomic(path, buf, len, e);
        free(buf), free(path);
        if (rc) return -1;
    }
    return 0;
}

/* The folds' embeddings (inputs embed0 .. embed{K-1}) and, in a pseudo round, the pseudo-labelled
 * gallery rows (input pseudo). */
static int read_inputs(fl_stage_ctx *c, knn_in *in, const knn_cfg *o, fl_err *e) {
    const char *dirs[KNN_MAX_FOLDS];
    for (int k = 0; k < in->K; k++) {
        char name[32];
        snprintf(name, sizeof name, "embed%d", k);
        if (!(dirs[k] = fl_stage_input(c, name, e)))
            return fl_errprefix(e, "%s has %d folds", in->folds_path, in->K);
    }
    if (fl_knn_read_embeddings(in, dirs, e)) return -1;
    if (!o->pseudo_gallery || !fl_stage_has_input(c, "pseudo")) return 0;
    const char *dir = fl_stage_input(c, "pseudo", e);
    char *path = dir ? fl_strdupf("%s/%s", dir, FL_PSEUDO_FILE) : NULL;
    int64_t skipped = 0;
    int rc = !dir ? -1 : !path ? fl_errf(e, "knn: out of memory") : fl_knn_read_pseudo(in, path, &skipped, e);
    if (rc == 0)
        fl_stage_log(c, "%lld pseudo-labelled test images join the gallery (%lld of %s left out: "
                        "unknown individual or no embedding)",
                     (long long)in->npl, (long long)skipped, path);
    free(path);
    return rc;
}

static int run(fl_stage_ctx *c, fl_err *e) {
    knn_cfg o;
    if (read_cfg(c, &o, e) != 0) return -1;
    knn_in in;
    memset(&in, 0, sizeof in);
    oof oo = {0};
    fl_ident_cand *cand = NULL;
    double *thr_of = NULL, *sp_thr = NULL;
    uint8_t *sp_own = NULL;
    const char *(*ans)[FL_MAP_K] = NULL;
    char *sub_path = NULL, *cv_path = NULL, *nb_path = NULL;
    cJSON *j = NULL, *nbj = cJSON_CreateArray();
    int rc = -1;
    const char *data = fl_stage_input(c, "data", e),
               *fdir = data ? fl_stage_input(c, "folds", e) : NULL;
    if (!fdir) goto done;
    char *ddir = fl_synth_data_dir(data);
    in.sample_path = ddir ? fl_strdupf("%s/sample_submission.csv", ddir) : NULL;
    free(ddir);
    in.folds_path = fl_strdupf("%s/folds.csv", fdir);
    if (!in.sample_path || !in.folds_path) {
        fl_errf(e, "knn: out of memory");
        goto done;
    }
    if (fl_knn_read_folds(&in, e) || fl_submission_read(in.sample_path, &in.sample, e) ||
        read_inputs(c, &in, &o, e))
        goto done;
    int64_t missing = 0;
    {
        uint8_t *seen = calloc((size_t)in.nf + 1, 1);
        if (!seen) {
            fl_errf(e, "knn: out of memory");
            goto done;
        }
        for (int64_t i = 0; i < in.ntr; i++)
            seen[in.tr_f[i]] = 1;
        for (int i = 0; i < in.nf; i++)
            missing += !seen[i];
        free(seen);
    }
    fl_stage_log(c,
                 "%d folds, %lld train and %lld test embeddings of width %lld; %lld train "
                 "images of folds.csv have no embedding (left out of the OOF)",
                 in.K, (long long)in.ntr, (long long)in.nte, (long long)in.E[0].d,
                 (long long)missing);

    /* ---- out of fold: thresholds and CV */
    if (run_oof(c, &in, &o, &oo, e) != 0) goto done;
    thr_of = malloc(((size_t)oo.n + 1) * sizeof *thr_of);
    sp_thr = malloc(((size_t)in.nsp + 1) * sizeof *sp_thr);
    sp_own = calloc((size_t)in.nsp + 1, 1);
    if (!thr_of || !sp_thr || !sp_own) {
        fl_errf(e, "knn: out of memory");
        goto done;
    }
    double global =
        o.has_threshold ? o.threshold : fl_ident_grid_search(oo.q, NULL, oo.n, o.grid_step, NULL);
    int use_sp = o.per_species && !o.has_threshold;
    for (int s = 0; s < in.nsp; s++)
        sp_thr[s] = global;
    if (use_sp && fl_ident_species_thresholds(oo.q, oo.sp, oo.n, in.nsp, o.species_min, o.grid_step,
                                              global, sp_thr, sp_own, e) != 0)
        goto done;
    for (int64_t i = 0; i < oo.n; i++)
        thr_of[i] = sp_thr[oo.sp[i]];
    fl_ident_map all;
    fl_ident_score(oo.q, thr_of, oo.n, &all);
    j = cJSON_CreateObject();
    if (!j) {
        fl_errf(e, "knn: out of memory");
        goto done;
    }
    cJSON_AddNumberToObject(j, "map5", all.map5);
    cJSON_AddNumberToObject(j, "map5_known", all.map5_known);
    cJSON_AddNumberToObject(j, "map5_new", all.map5_new);
    cJSON_AddNumberToObject(j, "threshold", global);
    cJSON_AddBoolToObject(j, "threshold_given", o.has_threshold);
    /* The grid the threshold is chosen on, for the run report: [t, MAP@5 of all, known, new]. */
    cJSON *grid = cJSON_AddArrayToObject(j, "threshold_grid");
    for (int g = 0, ng = fl_ident_grid_n(o.grid_step); grid && oo.n && g < ng; g++) {
        double t = g * o.grid_step, sum[3] = {0};
        int64_t cnt[3] = {0};
        for (int64_t i = 0; i < oo.n; i++) {
            double ap = fl_ident_q_ap(&oo.q[i], t);
            sum[0] += ap, cnt[0]++;
            sum[oo.q[i].is_new ? 2 : 1] += ap, cnt[oo.q[i].is_new ? 2 : 1]++;
        }
        double v[4] = {t, 0, 0, 0};
        for (int w = 0; w < 3; w++) v[w + 1] = cnt[w] ? sum[w] / (double)cnt[w] : NAN;
        cJSON_AddItemToArray(grid, cJSON_CreateDoubleArray(v, 4));
    }
    if (use_sp) {
        cJSON *st = cJSON_AddObjectToObject(j, "species_thresholds");
        int nown = 0;
        for (int s = 0; s < in.nsp; s++)
            if (sp_own[s]) cJSON_AddNumberToObject(st, in.spn[s], sp_thr[s]), nown++;
        fl_stage_log(c,
                     "per-species thresholds for %d of %d species (>= %d validation images), "
                     "the global one for the rest",
                     nown, in.nsp, o.species_min);
    }
    cJSON *folds = cJSON_AddArrayToObject(j, "folds");
    for (int f = 0; f < in.K; f++) {
        fl_ident_map m;
        fl_ident_score(oo.q + oo.off[f], thr_of + oo.off[f], oo.off[f + 1] - oo.off[f], &m);
        cJSON *fo = cJSON_CreateObject();
        cJSON_AddNumberToObject(fo, "fold", f);
        cJSON_AddNumberToObject(fo, "map5", m.map5);
        cJSON_AddNumberToObject(fo, "n", (double)m.n);
        cJSON_AddNumberToObject(fo, "n_known", (double)m.n_known);
        cJSON_AddNumberToObject(fo, "n_new", (double)m.n_new);
        cJSON_AddItemToArray(folds, fo);
        fl_stage_log(c, "fold %d: OOF MAP@5 %.5f on %lld validation images (%lld known, %lld new)",
                     f, m.map5, (long long)m.n, (long long)m.n_known, (long long)m.n_new);
    }
    fl_stage_log(c, "OOF MAP@5 %.5f (known %.5f on %lld, new %.5f on %lld) at threshold %.4f (%s)",
                 all.map5, all.map5_known, (long long)all.n_known, all.map5_new,
                 (long long)all.n_new, global, o.has_threshold ? "given" : "calibrated");
    if (!o.has_threshold && (all.n_known == 0 || all.n_new == 0))
        fl_stage_log(c, "warning: the validation images are all %s, so the new_individual threshold "
                        "is not calibrated by anything; set knn.threshold",
                     all.n_known == 0 ? "new_individual" : "known individuals");
    cJSON_AddNumberToObject(j, "n_query", (double)all.n);
    cJSON_AddNumberToObject(j, "n_train_missing", (double)missing);
    cJSON_AddNumberToObject(j, "new_share", all.n ? (double)all.n_new / (double)all.n : 0);

    /* ---- test: the fold ensemble against the whole train gallery */
    cand = malloc(((size_t)in.nte + 1) * sizeof *cand);
    ans = calloc((size_t)in.sample.n + 1, sizeof *ans);
    if (!cand || !ans) {
        fl_errf(e, "knn: out of memory");
        goto done;
    }
    if (in.nte > 0 && run_test(c, &in, &o, cand, nbj, e) != 0) goto done;
    int32_t *lab = malloc(((size_t)in.sample.n + 1) * FL_MAP_K * sizeof *lab);
    uint8_t *done_s = calloc((size_t)in.sample.n + 1, 1);
    if (!lab || !done_s) {
        free(lab), free(done_s);
        fl_errf(e, "knn: out of memory");
        goto done;
    }
    int64_t n_new_first = 0, n_fallback = 0;
    for (int64_t i = 0; i < in.nte; i++) {
        int32_t s = in.te_s[i], *l = lab + (size_t)s * FL_MAP_K;
        /* A test image's species is its nearest train image's. */
        double t = cand[i].top1 >= 0 ? sp_thr[fl_knn_gallery_species(&in, cand[i].top1)] : global;
        int n = fl_ident_answer(&cand[i], t, in.fill, in.nfill, l);
        for (int q = n; q < FL_MAP_K; q++)
            l[q] = -2;
        done_s[s] = 1;
    }
    fl_ident_cand none = {.n = 0, .top1 = -1};
    for (int s = 0; s < in.sample.n; s++) {
        int32_t *l = lab + (size_t)s * FL_MAP_K;
        if (!done_s[s]) { /* no crop, no embedding: new_individual + the most frequent */
            int n = fl_ident_answer(&none, global, in.fill, in.nfill, l);
            for (int q = n; q < FL_MAP_K; q++)
                l[q] = -2;
            n_fallback++;
        }
        n_new_first += l[0] == FL_IDENT_NEW;
        for (int q = 0; q < FL_MAP_K; q++)
            ans[s][q] = l[q] == FL_IDENT_NEW ? FL_NEW_INDIVIDUAL : l[q] >= 0 ? in.ids[l[q]] : NULL;
    }
    free(done_s);
    fl_stage_log(c,
                 "test: %d images, %lld without an embedding (answered new_individual and the "
                 "most frequent individuals), new_individual first on %lld (%.1f%%); ensemble of "
                 "%d folds by %s",
                 in.sample.n, (long long)n_fallback, (long long)n_new_first,
                 in.sample.n ? 100.0 * (double)n_new_first / in.sample.n : 0.0, in.K,
                 o.sim_ensemble ? "similarity" : "embeddings");
    cJSON_AddNumberToObject(j, "test_new_first_share",
                            in.sample.n ? (double)n_new_first / in.sample.n : 0);
    cJSON_AddNumberToObject(j, "n_test", in.sample.n);
    cJSON_AddNumberToObject(j, "n_test_fallback", (double)n_fallback);
    cJSON_AddNumberToObject(j, "k", o.k);
    cJSON_AddStringToObject(j, "ensemble", o.sim_ensemble ? "similarity" : "embeddings");
    sub_path = fl_strdupf("%s/submission.csv", fl_stage_out_dir(c));
    cv_path = fl_strdupf("%s/cv.json", fl_stage_out_dir(c));
    if (!sub_path || !cv_path) {
        free(lab);
        fl_errf(e, "knn: out of memory");
        goto done;
    }
    rc = write_checked(&in, sub_path, ans, e);
    free(lab);
    if (rc == 0) rc = fl_json_write_file(cv_path, j, "knn", e);
    if (rc == 0) rc = write_top1(&in, &oo, cand, fl_stage_out_dir(c), e);
    nb_path = fl_strdupf("%s/neighbours.json", fl_stage_out_dir(c));
    if (rc == 0 && (!nb_path || !nbj)) rc = fl_errf(e, "knn: out of memory");
    if (rc == 0) rc = fl_json_write_file(nb_path, nbj, "knn", e);
done:
    cJSON_Delete(j);
    cJSON_Delete(nbj);
    free(nb_path);
    oof_free(&oo);
    free(cand), free(thr_of), free(sp_thr), free(sp_own), free(ans);
    free(sub_path), free(cv_path);
    fl_knn_in_free(&in);
    return rc;
}

const fl_stage_def fl_stage_knn = {
    .name = "knn",
    .code_id = FL_CODE_ID,
    .summary = "cosine kNN on the folds' embeddings: OOF-calibrated new_individual, submission "
               "and cv.json",
    .run = run,
};
