/* PyTorch golden-fixture harness for runtime ops (fixtures from tests/fixtures/gen_runtime.py).
 *
 * A case's builder creates its graph through fx_in / fx_param, which take shapes from the
 * fixture file (in.<name>, param.<name>). The harness then loads inputs and parameters, runs
 * forward, backward seeded with `seed`, and compares `out`, every grad.in.* / grad.param.* and
 * every after.* buffer. Error per tensor: max|ours - torch| / max(max|torch|, 1e-6), required
 * below tol (1e-5 unless the case says otherwise), all in float32. */
#ifndef FL_TEST_RUNTIME_FIXTURE_HARNESS_H
#define FL_TEST_RUNTIME_FIXTURE_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/graph.h"
#include "runtime/graph_internal.h"
#include "runtime/safetensors.h"

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

static double fx_cmp(const char *what, const float *ours, const float *ref, size_t n) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)ours[i] - ref[i]);
        if (!(d <= md)) md = d; /* NaN propagates */
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    double rel = md / (mr > 1e-6 ? mr : 1e-6);
    printf("  %-36s max|diff| %.3e  rel %.3e  (%zu values)\n", what, md, rel, n);
    return rel;
}

typedef fl_id (*fx_build_fn)(fx *x);

/* Runs one fixture case; returns the worst relative error (INFINITY on any failure). */
static double fx_run(const char *name, fl_mode mode, fx_build_fn build) {
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
    float *buf = NULL;
    if (y < 0 || fl_graph_compile(x.g, y, &e) < 0) {
        printf("%s: build/compile: %s %s\n", name, fl_graph_error(x.g), e.msg);
        goto out;
    }
    /* Poison planned buffers and input gradients (0xff bytes are NaNs): reading unwritten
     * memory or adding into an uninitialized gradient cannot pass. */
    if (x.g->arena.base) memset(x.g->arena.base, 0xff, x.g->arena.size);
    for (int i = 0; i < x.g->n; i++)
        if (x.g->nodes[i].own_grad) memset(x.g->nodes[i].own_grad, 0xff, (size_t)fl_numel(&x.g->nodes[i]) * 4);
    for (size_t k = 0; k < x.f->n; k++) {
        const fl_st_tensor *t = &x.f->t[k];
        if (strncmp(t->name, "param.", 6) == 0) {
            size_t n;
            float *dst = fl_pstore_data(s, t->name + 6, &n);
            if (!dst || n != t->numel || fl_st_to_f32(x.f, t, dst, n, &e) < 0) {
                printf("%s: cannot load %s (%s)\n", name, t->name, e.msg);
                goto out;
            }
        } else if (strncmp(t->name, "in.", 3) == 0) {
            fl_id id = -1;
            for (int i = 0; i < x.nins; i++)
                if (strcmp(x.ins[i].name, t->name + 3) == 0) id = x.ins[i].id;
            if (id < 0 || (size_t)fl_graph_numel(x.g, id) != t->numel) {
                printf("%s: input %s unused or mis-shaped\n", name, t->name);
                goto out;
            }
            if (t->dtype == FL_ST_I32) memcpy(fl_graph_value(x.g, id), t->data, t->numel * 4);
            else if (fl_st_to_f32(x.f, t, fl_graph_value(x.g, id), t->numel, &e) < 0) goto out;
        }
    }
    fl_pstore_zero_grad(s);
    float *seed = fl_st_read_f32(x.f, "seed", NULL, &e);
    if (!seed || fl_graph_forward(x.g, &e) < 0 || fl_graph_backward(x.g, seed, &e) < 0) {
        printf("%s: run: %s\n", name, e.msg);
        free(seed);
        goto out;
    }
    free(seed);
    worst = 0;
    int compared = 0;
    for (size_t k = 0; k < x.f->n; k++) {
        const fl_st_tensor *t = &x.f->t[k];
        const float *ours = NULL;
        if (strcmp(t->name, "out") == 0) ours = fl_graph_value(x.g, y);
        else if (strncmp(t->name, "grad.param.", 11) == 0) ours = fl_pstore_grad(s, t->name + 11);
        else if (strncmp(t->name, "after.", 6) == 0) ours = fl_pstore_data(s, t->name + 6, NULL);
        else if (strncmp(t->name, "grad.in.", 8) == 0) {
            for (int i = 0; i < x.nins; i++)
                if (strcmp(x.ins[i].name, t->name + 8) == 0) ours = fl_graph_grad(x.g, x.ins[i].id);
        } else continue;
        if (!ours) {
            printf("%s: nothing to compare with %s\n", name, t->name);
            worst = INFINITY;
            continue;
        }
        free(buf);
        buf = fl_st_read_f32(x.f, t->name, NULL, &e);
        double r = buf ? fx_cmp(t->name, ours, buf, t->numel) : INFINITY;
        if (isnan(r)) r = INFINITY;
        if (r > worst) worst = r;
        compared++;
    }
    if (compared < 2) worst = INFINITY; /* at least the output and one gradient */
out:
    free(buf);
    fl_graph_free(x.g);
    fl_pstore_free(s);
    fl_st_close(x.f);
    return worst;
}

#endif
