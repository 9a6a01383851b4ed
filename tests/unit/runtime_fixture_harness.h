/* PyTorch golden-fixture harness for runtime ops (fixtures from tests/fixtures/gen_runtime.py).
 *
 * A case's builder creates its graph through fx_in / fx_param, which take shapes from the
 * fixture file (in.<name>, param.<name>). The harness then loads inputs and parameters, runs
 * forward, backward seeded with `seed`, and compares `out`, every grad.in.* / grad.param.* and
 * every after.* buffer against PyTorch's float32 answers. Criterion per tensor (numcmp.h,
 * nc_noise): ||ours - torch|| (2- and max-norm) within FX_NOISE_LIMIT times the tensor's own float32 noise, the
 * RMS change of our result when every float input, parameter and the seed move by one ulp
 * (FX_NOISE_RUNS draws); both sides round, so a ratio of 1-2 is normal. A fixed relative bound
 * is not stable here: batch-norm weight gradients are sums over N*H*W with cancellation and
 * move by 2.6e-6 relative between BLAS kernels. Each line also prints the max relative error and
 * what the criterion allows (relative to the tensor), which must stay below 1e-3. */
#ifndef FL_TEST_RUNTIME_FIXTURE_HARNESS_H
#define FL_TEST_RUNTIME_FIXTURE_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/graph.h"
#include "runtime/graph_internal.h"
#include "runtime/safetensors.h"
#include "tests/unit/support/numcmp.h"

#define FX_NOISE_RUNS 3
#define FX_NOISE_LIMIT 10.0

typedef struct fx {
    fl_st_file *f;
    fl_graph *g;
    struct {
        char name[128];
        fl_id id;
    } ins[16];
    int nins;
} fx;

static const fl_st_tensor *fx_find(fx *x, const char *kind, const char *name) {
    char key[256];
    snprintf(key, sizeof key, "%s%s", kind, name);
    return fl_st_find(x->f, key);
}

/* An input named like the fixture's in.<name> (F32 or I32 labels); requires grad when the
 * fixture has its gradient. */
static fl_id fx_in(fx *x, const char *name) {
    for (int i = 0; i < x->nins; i++)
        if (strcmp(x->ins[i].name, name) == 0) return x->ins[i].id;
    const fl_st_tensor *t = fx_find(x, "in.", name);
    if (!t || x->nins == 16) {
        printf("fixture has no input in.%s\n", name);
        return -1;
    }
    fl_id id = t->dtype == FL_ST_I32 ? fl_input_labels(x->g, name, t->shape[0])
                                     : fl_input(x->g, name, t->ndim, t->shape);
    if (t->dtype != FL_ST_I32 && fx_find(x, "grad.in.", name)) fl_input_requires_grad(x->g, id);
    snprintf(x->ins[x->nins].name, sizeof x->ins[x->nins].name, "%s", name);
    x->ins[x->nins++].id = id;
    return id;
}

/* A parameter (or, with buffer = 1, a buffer) with the fixture's shape for param.<name>. */
static fl_id fx_param(fx *x, const char *name, int buffer) {
    const fl_st_tensor *t = fx_find(x, "param.", name);
    if (!t) {
        printf("fixture has no param.%s\n", name);
        return -1;
    }
    fl_init z = {FL_INIT_ZEROS, 0, 0};
    return buffer ? fl_buffer(x->g, name, t->ndim, t->shape, z)
                  : fl_parameter(x->g, name, t->ndim, t->shape, z, 0);
}

typedef fl_id (*fx_build_fn)(fx *x);

/* Loads every param.* and in.* of the fixture into the store and the graph's inputs, each float
 * moved by one ulp when perturb >= 0 (nc_perturb_ulp); 0 on success. */
static int fx_load(fx *x, fl_pstore *s, const char *name, int perturb) {
    fl_err e = {{0}};
    for (size_t k = 0; k < x->f->n; k++) {
        const fl_st_tensor *t = &x->f->t[k];
        float *dst = NULL;
        if (strncmp(t->name, "param.", 6) == 0) {
            size_t n;
            dst = fl_pstore_data(s, t->name + 6, &n);
            if (!dst || n != t->numel || fl_st_to_f32(x->f, t, dst, n, &e) < 0) {
                printf("%s: cannot load %s (%s)\n", name, t->name, e.msg);
                return -1;
            }
        } else if (strncmp(t->name, "in.", 3) == 0) {
            fl_id id = -1;
            for (int i = 0; i < x->nins; i++)
                if (strcmp(x->ins[i].name, t->name + 3) == 0) id = x->ins[i].id;
            if (id < 0 || (size_t)fl_graph_numel(x->g, id) != t->numel) {
                printf("%s: input %s unused or mis-shaped\n", name, t->name);
                return -1;
            }
            if (t->dtype == FL_ST_I32) memcpy(fl_graph_value(x->g, id), t->data, t->numel * 4);
            else if (fl_st_to_f32(x->f, t, dst = fl_graph_value(x->g, id), t->numel, &e) < 0) return -1;
        }
        if (dst && perturb >= 0) nc_perturb_ulp(dst, t->numel, 1000 * (uint64_t)perturb + k);
    }
    return 0;
}

/* Loads (perturb as fx_load), then forward and backward seeded with the fixture's seed. */
static int fx_step(fx *x, fl_pstore *s, const char *name, int perturb) {
    fl_err e = {{0}};
    if (fx_load(x, s, name, perturb) < 0) return -1;
    fl_pstore_zero_grad(s);
    size_t ns = 0;
    float *seed = fl_st_read_f32(x->f, "seed", &ns, &e);
    if (seed && perturb >= 0) nc_perturb_ulp(seed, ns, 777 + (uint64_t)perturb);
    int rc = !seed || fl_graph_forward(x->g, &e) < 0 || fl_graph_backward(x->g, seed, &e) < 0 ? -1 : 0;
    if (rc < 0) printf("%s: run: %s\n", name, e.msg);
    free(seed);
    return rc;
}

/* Our value for a compared fixture tensor (out, grad.in.*, grad.param.*, after.*); *cmp = 0 for
 * tensors that are not compared. */
static const float *fx_ours(fx *x, fl_pstore *s, fl_id y, const char *key, int *cmp) {
    *cmp = 1;
    if (strcmp(key, "out") == 0) return fl_graph_value(x->g, y);
    if (strncmp(key, "grad.param.", 11) == 0) return fl_pstore_grad(s, key + 11);
    if (strncmp(key, "after.", 6) == 0) return fl_pstore_data(s, key + 6, NULL);
    if (strncmp(key, "grad.in.", 8) == 0) {
        for (int i = 0; i < x->nins; i++)
            if (strcmp(x->ins[i].name, key + 8) == 0) return fl_graph_grad(x->g, x->ins[i].id);
        return NULL;
    }
    *cmp = 0;
    return NULL;
}

/* Runs one fixture case; returns the worst noise ratio (INFINITY on any failure) and adds every
 * compared tensor to w (limit FX_NOISE_LIMIT). */
static double fx_run_w(const char *name, fl_mode mode, fx_build_fn build, nc_worst *w) {
    char path[1024];
    const char *root = getenv("FLUKE_SRC");
    snprintf(path, sizeof path, "%s/tests/fixtures/runtime/%s.safetensors", root ? root : ".", name);
    fl_err e = {{0}};
    fx x;
    memset(&x, 0, sizeof x);
    double worst = INFINITY;
    x.f = fl_st_open(path, &e);
    if (!x.f) {
        printf("%s: %s\n", name, e.msg);
        return worst;
    }
    printf("%s:\n", name);
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    x.g = fl_graph_new(s, mode, &e);
    fl_id y = build(&x);
    nc_spread *sp = calloc(x.f->n, sizeof *sp);
    const float **ours = calloc(x.f->n, sizeof *ours);
    if (!sp || !ours) goto out;
    if (y < 0 || fl_graph_compile(x.g, y, &e) < 0) {
        printf("%s: build/compile: %s %s\n", name, fl_graph_error(x.g), e.msg);
        goto out;
    }
    /* Poison planned buffers and input gradients (0xff bytes are NaNs): reading unwritten
     * memory or adding into an uninitialized gradient cannot pass. */
    if (x.g->arena.base) memset(x.g->arena.base, 0xff, x.g->arena.size);
    for (int i = 0; i < x.g->n; i++)
        if (x.g->nodes[i].own_grad) memset(x.g->nodes[i].own_grad, 0xff, (size_t)fl_numel(&x.g->nodes[i]) * 4);
    if (fx_step(&x, s, name, -1) < 0) goto out;
    worst = 0;
    int compared = 0;
    for (size_t k = 0; k < x.f->n; k++) {
        int cmp;
        ours[k] = fx_ours(&x, s, y, x.f->t[k].name, &cmp);
        if (!cmp) continue;
        if (!ours[k]) {
            printf("%s: nothing to compare with %s\n", name, x.f->t[k].name);
            worst = INFINITY;
            continue;
        }
        nc_spread_begin(&sp[k], ours[k], x.f->t[k].numel);
    }
    /* The float32 noise of every compared tensor (numcmp.h, nc_noise). */
    for (int p = 0; p < FX_NOISE_RUNS; p++) {
        if (fx_step(&x, s, name, p) < 0) {
            worst = INFINITY;
            goto out;
        }
        for (size_t k = 0; k < x.f->n; k++)
            if (sp[k].base) nc_spread_add(&sp[k], ours[k]);
    }
    for (size_t k = 0; k < x.f->n; k++) {
        const fl_st_tensor *t = &x.f->t[k];
        if (!sp[k].base) continue;
        float *ref = fl_st_read_f32(x.f, t->name, NULL, &e);
        if (!ref) {
            printf("%s: %s: %s\n", name, t->name, e.msg);
            worst = INFINITY;
            continue;
        }
        nc_res r = nc_noise(NC_F32(sp[k].base), NC_F32(ref), t->numel, &sp[k]);
        nc_res rel = nc_normwise(NC_F32(sp[k].base), NC_F32(ref), t->numel, 1e-6);
        double rnorm = nc_norm2(NC_F32(ref), t->numel);
        int ok = nc_worst_add(w, t->name, r, FX_NOISE_LIMIT);
        /* teeth: what the criterion allows stays far below the tensor (an exactly-zero
         * reference, e.g. the gradient of a bias before BN, is held to an absolute 1e-6) */
        double allowed = nc_noise_allowed(&sp[k], NC_F32(ref), t->numel, FX_NOISE_LIMIT);
        int loose = !(allowed <= 1e-3 * rnorm || allowed <= 1e-6 * sqrt((double)t->numel));
        printf("  %-36s noise ratio %.2f  max rel %.2e  allows %.1e  (%zu values)%s%s\n", t->name, r.fig, rel.fig,
               rnorm > 0 ? allowed / rnorm : allowed, t->numel, ok ? "" : "  FAIL", loose ? "  TOO LOOSE" : "");
        if (r.nonfinite) printf("    %zu non-finite value(s), first at [%zu]\n", r.nonfinite, r.at);
        double q = ok && !loose ? r.fig : INFINITY;
        if (q > worst) worst = q;
        compared++;
        free(ref);
    }
    if (compared < 2) worst = INFINITY; /* at least the output and one gradient */
out:
    if (sp)
        for (size_t k = 0; k < x.f->n; k++) nc_spread_free(&sp[k]);
    free(sp);
    free(ours);
    fl_graph_free(x.g);
    fl_pstore_free(s);
    fl_st_close(x.f);
    return worst;
}

#endif
