/* No allocation in a training step, and packed conv weights that follow the parameters.
 *
 * The binary interposes malloc / calloc / realloc / free / posix_memalign / aligned_alloc /
 * memalign (forwarding to glibc's __libc_* entry points) with counters that count only while
 * armed, in every thread (OpenMP workers and OpenBLAS included). Requests made by libgomp itself
 * are counted apart: gcc's libgomp mallocs (and frees at once) a small team descriptor for every
 * parallel region that runs on one thread (an `if` clause that is false, or OMP_NUM_THREADS=1);
 * they are printed and bounded in size, and everything else must be zero.
 *   - steps 2..N of a small EfficientNet + DOLG + ArcFace embedding model and of YOLOv5n (one
 *     step = zero_grad, forward, backward, gradient clipping, AdamW / SGD update) allocate
 *     nothing, YOLOv5n's with its loss and target assignment in the graph (the detector stage's
 *     step) and the EMA;
 *     the trained parameters equal, bit for bit, those of the same steps run on a new graph per
 *     step (so no cached pack was stale);
 *   - during compile, the biggest allocation besides the planner's arena is at most the
 *     graph's own input buffers or 1 MiB, whichever is larger (the graph's bookkeeping);
 *   - an eval graph packs each conv's weights once over many forwards; a parameter write by the
 *     optimizer, fl_pstore_copy_from, fl_pstore_data, a checkpoint load or fl_pstore_touch
 *     between two forwards repacks, and the output then equals a fresh graph's, bit for bit.
 * Under AddressSanitizer (which owns malloc) the counting tests print "skipped" and skip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <link.h>
#include <unistd.h>

#include "runtime/checkpoint.h"
#include "runtime/graph.h"
#include "runtime/graph_internal.h"
#include "runtime/models/embed_head.h"
#include "runtime/models/yolo.h"
#include "runtime/optim.h"
#include "runtime/step.h"
#include "runtime/rng.h"
#include "tests/unit/runtime_blocks.h"

#if defined(__SANITIZE_ADDRESS__)
#define FL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FL_ASAN 1
#endif
#endif
#ifndef FL_ASAN
#define FL_ASAN 0
#endif

/* ---- counting allocator ---- */

typedef struct counts {
    long calls;       /* allocating calls (free not counted), libgomp's excluded */
    size_t bytes;     /* bytes requested */
    size_t big[2];    /* the two largest single requests */
    long gomp_calls;  /* requests from inside libgomp (team descriptors) */
    size_t gomp_big;  /* the largest of those */
} counts;

/* libgomp's loaded segments, found before anything is armed (no calls inside malloc). */
static uintptr_t g_gomp_lo[8], g_gomp_hi[8];
static int g_gomp_n;

static int find_gomp(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size, (void)data;
    if (!info->dlpi_name || !strstr(info->dlpi_name, "libgomp")) return 0;
    for (int i = 0; i < info->dlpi_phnum && g_gomp_n < 8; i++)
        if (info->dlpi_phdr[i].p_type == PT_LOAD) {
            g_gomp_lo[g_gomp_n] = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
            g_gomp_hi[g_gomp_n] = g_gomp_lo[g_gomp_n] + info->dlpi_phdr[i].p_memsz;
            g_gomp_n++;
        }
    return 0;
}

#if !FL_ASAN
static int from_gomp(const void *ra) {
    for (int i = 0; i < g_gomp_n; i++)
        if ((uintptr_t)ra >= g_gomp_lo[i] && (uintptr_t)ra < g_gomp_hi[i]) return 1;
    return 0;
}
#endif

static atomic_int g_armed;
static atomic_flag g_lock = ATOMIC_FLAG_INIT;
static counts g_n;

static void arm(void) {
    memset(&g_n, 0, sizeof g_n);
    atomic_store(&g_armed, 1);
}

static counts disarm(void) {
    atomic_store(&g_armed, 0);
    while (atomic_flag_test_and_set(&g_lock)) {
    }
    counts c = g_n;
    atomic_flag_clear(&g_lock);
    return c;
}

#if !FL_ASAN
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

#define note(n) note_from(n, __builtin_return_address(0))
static void note_from(size_t n, const void *ra) {
    if (!atomic_load(&g_armed)) return;
    while (atomic_flag_test_and_set(&g_lock)) {
    }
    if (from_gomp(ra)) {
        g_n.gomp_calls++;
        if (n > g_n.gomp_big) g_n.gomp_big = n;
        atomic_flag_clear(&g_lock);
        return;
    }
    g_n.calls++;
    g_n.bytes += n;
    if (n > g_n.big[0]) {
        g_n.big[1] = g_n.big[0];
        g_n.big[0] = n;
    } else if (n > g_n.big[1]) {
        g_n.big[1] = n;
    }
    atomic_flag_clear(&g_lock);
}

void *malloc(size_t n) {
    note(n);
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    note(a * b);
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    note(n);
    return __libc_realloc(p, n);
}
void free(void *p) { __libc_free(p); }
void *memalign(size_t al, size_t n) {
    note(n);
    return __libc_memalign(al, n);
}
void *aligned_alloc(size_t al, size_t n) {
    note(n);
    return __libc_memalign(al, n);
}
int posix_memalign(void **out, size_t al, size_t n) {
    note(n);
    void *p = __libc_memalign(al, n);
    if (!p) return 12; /* ENOMEM */
    *out = p;
    return 0;
}
#endif

static int skip_under_asan(void) {
    if (!FL_ASAN) return 0;
    printf("skipped: AddressSanitizer owns malloc, so allocations cannot be counted here\n");
    return 1;
}

/* ---- the embedding model ---- */

#define STEPS 5

static fl_embed_cfg small_embed(void) {
    fl_embed_cfg c = fl_embed_defaults(10, 64);
    fl_err e = {{0}};
    assert_int_equal(fl_effnet_preset("tf_efficientnet_b0", &c.backbone, &e), 0);
    c.backbone.width = 0.25;
    c.backbone.depth = 0.25;
    c.backbone.drop_path_rate = 0.2;
    c.dolg = fl_dolg_defaults(32);
    c.arc.subcenters = 2;
    return c;
}

/* libgomp's one-thread team descriptor (a few hundred bytes to a few KiB, by thread count) */
#define GOMP_BOUND ((size_t)16 << 10)

/* The biggest allocation during compile must stay below this unless an input is bigger. */
#define COMPILE_BOUND ((size_t)1 << 20)

static void check_compile(counts c, size_t arena, size_t inputs, const char *what) {
    size_t bound = inputs > COMPILE_BOUND ? inputs : COMPILE_BOUND;
    /* the arena is one allocation of the planned peak and the biggest; the rest is small */
    printf("%s compile: %ld allocations, %zu bytes; arena %zu, next biggest %zu (inputs %zu, bound %zu)\n",
           what, c.calls, c.bytes, c.big[0], c.big[1], inputs, bound);
    assert_true(c.big[0] == arena);
    assert_true(c.big[1] <= bound);
}

/* FNV-1a over every parameter's bytes: the trained state, to compare runs bit for bit. */
static uint64_t params_hash(const fl_param_list *pl) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < pl->n; i++)
        for (size_t k = 0; k < pl->v[i].numel * sizeof(float); k++)
            h = (h ^ ((const unsigned char *)pl->v[i].data)[k]) * 1099511628211ull;
    return h;
}

/* STEPS embed training steps, each on a graph built for it; the parameter hash at the end. */
static uint64_t embed_fresh_graphs(const fl_embed_cfg *c) {
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 7, &e);
    fl_optim *o = NULL;
    fl_param_list pl;
    for (int step = 1; step <= STEPS; step++) {
        fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
        fl_embed_model m;
        assert_int_equal(fl_embed_build(g, c, 8, 64, 64, 1, &m, &e), 0);
        assert_int_equal(fl_graph_compile(g, m.loss, &e), 0);
        if (!o) {
            assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
            fl_optim_cfg oc = fl_optim_defaults(FL_OPTIM_ADAMW, 1e-3);
            assert_non_null(o = fl_optim_create(&oc, &pl, &e));
        }
        float *x = fl_graph_value(g, m.x);
        int32_t *lab = fl_graph_value(g, m.labels);
        fl_rng r;
        fl_rng_init(&r, 3, 0);
        for (int64_t i = 0; i < fl_graph_numel(g, m.x); i++) x[i] = fl_rng_uniform(&r);
        for (int i = 0; i < 8; i++) lab[i] = i % 10;
        fl_graph_set_rng(g, 5, (uint64_t)step);
        fl_optim_zero_grad(o);
        assert_int_equal(fl_graph_forward(g, &e), 0);
        assert_int_equal(fl_graph_backward(g, NULL, &e), 0);
        fl_clip_grad_norm(&pl, 10.0);
        fl_optim_step(o);
        fl_graph_free(g);
    }
    uint64_t h = params_hash(&pl);
    fl_optim_free(o);
    fl_pstore_free(s);
    return h;
}

static void test_embed_steps_allocate_nothing(void **state) {
    (void)state;
    if (skip_under_asan()) {
        skip();
        return;
    }
    fl_err e = {{0}};
    fl_embed_cfg c = small_embed();
    fl_pstore *s = fl_pstore_new(FL_F32, 7, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_embed_model m;
    assert_int_equal(fl_embed_build(g, &c, 8, 64, 64, 1, &m, &e), 0);
    arm();
    int rc = fl_graph_compile(g, m.loss, &e);
    counts cc = disarm();
    if (rc) printf("%s\n", e.msg);
    assert_int_equal(rc, 0);
    size_t peak;
    fl_graph_mem(g, &peak, NULL);
    size_t in_bytes = (size_t)fl_graph_numel(g, m.x) * 4;
    check_compile(cc, peak, in_bytes, "embed");
    fl_param_list pl;
    assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
    fl_optim_cfg oc = fl_optim_defaults(FL_OPTIM_ADAMW, 1e-3);
    fl_optim *o = fl_optim_create(&oc, &pl, &e);
    assert_non_null(o);
    float *x = fl_graph_value(g, m.x);
    int32_t *lab = fl_graph_value(g, m.labels);
    fl_rng r;
    fl_rng_init(&r, 3, 0);
    for (int64_t i = 0; i < fl_graph_numel(g, m.x); i++) x[i] = fl_rng_uniform(&r);
    for (int i = 0; i < 8; i++) lab[i] = i % 10;
    const float *loss = fl_graph_value(g, m.loss);
    long total = 0, gomp = 0;
    size_t gomp_big = 0;
    for (int step = 1; step <= STEPS; step++) {
        if (step >= 2) arm();
        fl_graph_set_rng(g, 5, (uint64_t)step);
        fl_optim_zero_grad(o);
        assert_int_equal(fl_graph_forward(g, &e), 0);
        assert_int_equal(fl_graph_backward(g, NULL, &e), 0);
        fl_clip_grad_norm(&pl, 10.0);
        fl_optim_step(o);
        counts k = disarm();
        assert_true(isfinite(loss[0]));
        if (step >= 2) {
            printf("embed step %d: loss %.9g, %ld allocations (%zu bytes); libgomp team descriptors %ld (<= %zu bytes)\n",
                   step, loss[0], k.calls, k.bytes, k.gomp_calls, k.gomp_big);
            total += k.calls;
            gomp += k.gomp_calls;
            if (k.gomp_big > gomp_big) gomp_big = k.gomp_big;
        }
    }
    uint64_t h = params_hash(&pl);
    printf("embed: arena %zu bytes, %ld allocations in steps 2..%d, params %016llx\n", peak, total, STEPS,
           (unsigned long long)h);
    assert_int_equal(total, 0);
    assert_true(gomp_big <= GOMP_BOUND);
    (void)gomp;
    fl_optim_free(o);
    fl_graph_free(g);
    fl_pstore_free(s);
    /* The same steps with a new graph per step (nothing cached across steps) end bit for bit
     * where the long-lived graph did: its packs were never stale. */
    uint64_t h2 = embed_fresh_graphs(&c);
    printf("embed, a fresh graph every step: params %016llx\n", (unsigned long long)h2);
    assert_true(h2 == h);
}

/* The in-graph update (runtime/step.h) writes the parameters inside the step: the conv packs
 * must follow those writes too. The same AdamW + clip steps as above, run by fl_graph_step on one
 * long-lived graph, end bit for bit where a fresh graph per step with the host optimizer does. */
static void test_in_graph_update_packs_follow(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_embed_cfg c = small_embed();
    fl_pstore *s = fl_pstore_new(FL_F32, 7, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_embed_model m;
    assert_int_equal(fl_embed_build(g, &c, 8, 64, 64, 1, &m, &e), 0);
    assert_int_equal(fl_graph_compile(g, m.loss, &e), 0);
    fl_update_cfg uc = {.optim = fl_optim_defaults(FL_OPTIM_ADAMW, 1e-3), .clip = 10.0};
    if (fl_graph_attach_update(g, &uc, &e)) fail_msg("%s", e.msg);
    float *x = fl_graph_value(g, m.x);
    int32_t *lab = fl_graph_value(g, m.labels);
    fl_rng r;
    fl_rng_init(&r, 3, 0);
    for (int64_t i = 0; i < fl_graph_numel(g, m.x); i++) x[i] = fl_rng_uniform(&r);
    for (int i = 0; i < 8; i++) lab[i] = i % 10;
    fl_update_scalars sc = {.lr = {0}};
    for (int k = 0; k < FL_OPTIM_MAX_GROUPS; k++) sc.lr[k] = 1e-3;
    for (int step = 1; step <= STEPS; step++) {
        fl_graph_set_rng(g, 5, (uint64_t)step);
        fl_step_out out;
        if (fl_graph_step(g, &sc, &out, &e)) fail_msg("step %d: %s", step, e.msg);
    }
    fl_param_list pl;
    assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
    uint64_t h = params_hash(&pl);
    fl_graph_free(g);
    fl_pstore_free(s);
    uint64_t h2 = embed_fresh_graphs(&c);
    printf("embed, in-graph update: params %016llx; a fresh graph every step: %016llx\n",
           (unsigned long long)h, (unsigned long long)h2);
    assert_true(h2 == h);
}

/* ---- YOLOv5n ---- */

static void test_yolo_steps_allocate_nothing(void **state) {
    (void)state;
    if (skip_under_asan()) {
        skip();
        return;
    }
    fl_err e = {{0}};
    fl_yolo_cfg c;
    assert_int_equal(fl_yolo_cfg_size(&c, 'n', 3, &e), 0);
    fl_pstore *s = fl_pstore_new(FL_F32, 1, &e);
    fl_graph *g = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id x = fl_input(g, "x", 4, (int64_t[]){2, 96, 96, 3});
    fl_yolo_heads h;
    assert_int_equal(fl_yolo_build(g, s, x, &c, &h, &e), 0);
    /* the detector stage's step: the loss and target assignment in the graph (yolo_loss op),
     * then clipping, SGD and the EMA as update ops */
    fl_yolo_hyp hyp = fl_yolo_hyp_default(96);
    fl_id tin = fl_yolo_targets_input(g, "targets", 8), loss = -1;
    fl_id items = fl_yolo_loss_node(g, &c, &hyp, &h, tin, &loss);
    arm();
    int rc = fl_graph_compile(g, loss, &e);
    counts cc = disarm();
    assert_int_equal(rc, 0);
    size_t peak;
    fl_graph_mem(g, &peak, NULL);
    check_compile(cc, peak, (size_t)fl_graph_numel(g, x) * 4, "yolov5n");
    fl_param_list pl;
    assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
    fl_optim_cfg oc = fl_optim_defaults(FL_OPTIM_SGD, 0.01);
    oc.momentum = 0.937;
    oc.nesterov = 1;
    oc.weight_decay = 5e-4;
    fl_update_cfg uc = {.optim = oc, .clip = 10.0, .ema = 1, .ema_decay = 0.9999, .ema_tau = 2000};
    assert_int_equal(fl_graph_attach_update(g, &uc, &e), 0);
    fl_rng r;
    fl_rng_init(&r, 1, 0);
    float *xin = fl_graph_value(g, x);
    for (int64_t i = 0; i < fl_graph_numel(g, x); i++) xin[i] = fl_rng_uniform(&r);
    fl_yolo_target t[4] = {{0, 0, 0.3f, 0.4f, 0.2f, 0.3f}, {0, 1, 0.7f, 0.6f, 0.1f, 0.2f},
                           {1, 2, 0.5f, 0.5f, 0.4f, 0.4f}, {1, 0, 0.2f, 0.8f, 0.1f, 0.1f}};
    float tpack[8 * 6];
    assert_int_equal(fl_yolo_pack_targets(t, 4, tpack, 8, &e), 0);
    long total = 0, gomp = 0;
    size_t gomp_big = 0;
    for (int step = 1; step <= STEPS; step++) {
        fl_update_scalars sc = {.lr = {0.01, 0.01, 0.01}, .momentum = 0.937};
        fl_step_out out;
        if (step >= 2) arm();
        int src = fl_graph_set_input(g, tin, tpack, sizeof tpack, &e);
        int rs = src == 0 ? fl_graph_step(g, &sc, &out, &e) : -1;
        counts k = disarm();
        assert_int_equal(rs, 0);
        const float *lv = fl_graph_value(g, items);
        assert_true(isfinite(lv[0]));
        if (step >= 2) {
            printf("yolov5n step %d: loss %.9g, %ld allocations (%zu bytes), libgomp team descriptors %ld\n", step,
                   lv[0], k.calls, k.bytes, k.gomp_calls);
            total += k.calls;
            gomp += k.gomp_calls;
            if (k.gomp_big > gomp_big) gomp_big = k.gomp_big;
        }
    }
    printf("yolov5n: arena %zu bytes, %ld allocations in steps 2..%d (loss, backward, clip, SGD, EMA); params %016llx\n",
           peak, total, STEPS, (unsigned long long)params_hash(&pl));
    assert_int_equal(total, 0);
    assert_true(gomp_big <= GOMP_BOUND);
    (void)gomp;
    fl_graph_free(g);
    fl_pstore_free(s);
}

/* ---- packed weights follow the parameters ---- */

#define PX 2 * 12 * 12 * 4

/* 3x3 conv -> BN -> SiLU -> depthwise 3x3 -> 1x1 conv: all three convs pack (the 1x1 too: its
 * GEMM operands are panels, runtime/cpu/gemm.h), NPACK packs per parameter version. */
#define NPACK 3
static fl_id pack_net(fl_graph *g, fl_id *x) {
    *x = fl_input(g, "x", 4, (int64_t[]){2, 12, 12, 4});
    fl_id h = fl_silu(g, fl_bn_layer(g, fl_conv2d_layer(g, *x, "c1", 8, 3, 1, 1, 1, FL_PAD_AUTO, 0), "bn", 1e-5, 0.1));
    h = fl_conv2d_layer(g, h, "dw", 8, 3, 1, 1, 8, FL_PAD_AUTO, 1);
    return fl_conv2d_layer(g, h, "pw", 6, 1, 1, 1, 1, 0, 1);
}

static void fill_x(float *x) {
    for (int i = 0; i < PX; i++) x[i] = (float)sin(0.37 * i);
}

/* The output of a graph built now on s (so its packs are made from the current weights). */
static void fresh_output(fl_pstore *s, float *out, size_t n) {
    fl_err e = {{0}};
    fl_graph *g = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_id x, y = pack_net(g, &x);
    fl_graph_mark_output(g, y);
    assert_int_equal(fl_graph_compile(g, -1, &e), 0);
    fill_x(fl_graph_value(g, x));
    assert_int_equal(fl_graph_forward(g, &e), 0);
    assert_int_equal((size_t)fl_graph_numel(g, y), n);
    memcpy(out, fl_graph_value(g, y), n * sizeof *out);
    fl_graph_free(g);
}

typedef struct pack_run {
    fl_graph *g;
    fl_id y;
    size_t ny;
    float got[2 * 12 * 12 * 6], want[2 * 12 * 12 * 6];
} pack_run;

/* Forward of the long-lived eval graph; it must equal a fresh graph's output and have made
 * `packs` packs since it was built. */
static void expect(fl_pstore *s, pack_run *r, uint64_t packs, const char *what) {
    fl_err e = {{0}};
    assert_int_equal(fl_graph_forward(r->g, &e), 0);
    memcpy(r->got, fl_graph_value(r->g, r->y), r->ny * sizeof(float));
    fresh_output(s, r->want, r->ny);
    printf("%-34s packs %llu (expected %llu), output %s a fresh graph's\n", what,
           (unsigned long long)r->g->repacks, (unsigned long long)packs,
           memcmp(r->got, r->want, r->ny * sizeof(float)) ? "DIFFERS from" : "equals");
    assert_memory_equal(r->got, r->want, r->ny * sizeof(float));
    assert_int_equal(r->g->repacks, packs);
}

static void test_packs_follow_parameter_writes(void **state) {
    (void)state;
    fl_err e = {{0}};
    fl_pstore *s = fl_pstore_new(FL_F32, 11, &e);
    pack_run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->g = fl_graph_new(s, FL_MODE_EVAL, &e);
    fl_id x;
    r->y = pack_net(r->g, &x);
    fl_graph_mark_output(r->g, r->y);
    assert_int_equal(fl_graph_compile(r->g, -1, &e), 0);
    r->ny = (size_t)fl_graph_numel(r->g, r->y);
    assert_true(r->ny <= sizeof r->got / sizeof *r->got);
    fill_x(fl_graph_value(r->g, x));
    fl_param_list pl;
    assert_int_equal(fl_pstore_params(s, &pl, &e), 0);
    fl_optim_cfg oc = fl_optim_defaults(FL_OPTIM_SGD, 0.1);
    fl_optim *o = fl_optim_create(&oc, &pl, &e);
    assert_non_null(o);
    float *w1 = fl_pstore_data(s, "c1.weight", NULL); /* kept: written through below */

    expect(s, r, 1 * NPACK, "first forward");
    for (int i = 0; i < 20; i++) assert_int_equal(fl_graph_forward(r->g, &e), 0);
    expect(s, r, 1 * NPACK, "21 more forwards, no write");

    for (size_t i = 0; i < pl.n; i++)
        if (pl.v[i].grad)
            for (size_t k = 0; k < pl.v[i].numel; k++) pl.v[i].grad[k] = 0.01f * (float)(k % 7);
    fl_optim_step(o);
    expect(s, r, 2 * NPACK, "fl_optim_step");

    fl_param_list half = pl;
    fl_param *hv = calloc(pl.n, sizeof *hv);
    float **bufs = calloc(pl.n, sizeof *bufs);
    assert_true(hv && bufs);
    for (size_t i = 0; i < pl.n; i++) {
        hv[i] = pl.v[i];
        bufs[i] = malloc(pl.v[i].numel * sizeof(float));
        for (size_t k = 0; k < pl.v[i].numel; k++) bufs[i][k] = pl.v[i].data[k] * 0.5f;
        hv[i].data = bufs[i];
        hv[i].version = NULL;
    }
    half.v = hv;
    assert_int_equal(fl_pstore_copy_from(s, &half, &e), 0);
    expect(s, r, 3 * NPACK, "fl_pstore_copy_from");

    ((float *)fl_pstore_data(s, "dw.weight", NULL))[4] += 0.5f;
    expect(s, r, 4 * NPACK, "write through fl_pstore_data");

    char path[] = "/tmp/fluke_noalloc_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    fl_ckpt c = {.params = &pl};
    assert_int_equal(fl_ckpt_save(path, &c, &e), 0);
    /* A write through a pointer taken long ago, the store not told: the pack is kept (that is
     * the cache: no write declared, no repack), so the output is still the old weights'. */
    float before[2 * 12 * 12 * 6];
    memcpy(before, r->got, r->ny * sizeof(float));
    w1[0] += 1.0f;
    assert_int_equal(fl_graph_forward(r->g, &e), 0);
    printf("%-34s packs %llu (expected %d), output %s\n", "untold write (contract: no repack)",
           (unsigned long long)r->g->repacks, 4 * NPACK,
           memcmp(before, fl_graph_value(r->g, r->y), r->ny * sizeof(float)) ? "changed" : "unchanged");
    assert_int_equal(r->g->repacks, 4 * NPACK);
    assert_memory_equal(before, fl_graph_value(r->g, r->y), r->ny * sizeof(float));
    fl_pstore_touch(s);
    expect(s, r, 5 * NPACK, "the same write, then fl_pstore_touch");
    assert_int_equal(fl_ckpt_load(path, &c, NULL, &e), 0);
    unlink(path);
    expect(s, r, 6 * NPACK, "fl_ckpt_load");
    /* reading the output or an input does not count as a parameter write */
    (void)fl_graph_value(r->g, r->y);
    expect(s, r, 6 * NPACK, "reading values");

    /* A train graph: backward reuses forward's pack; the next step repacks once. */
    fl_graph *t = fl_graph_new(s, FL_MODE_TRAIN, &e);
    fl_id tx, ty = pack_net(t, &tx);
    fl_id loss = fl_mean(t, ty, 0xfu, 0);
    assert_int_equal(fl_graph_compile(t, loss, &e), 0);
    fill_x(fl_graph_value(t, tx));
    for (int step = 1; step <= 3; step++) {
        fl_optim_zero_grad(o);
        assert_int_equal(fl_graph_forward(t, &e), 0);
        assert_int_equal(fl_graph_backward(t, NULL, &e), 0);
        printf("train step %d: %llu packs after forward + backward\n", step, (unsigned long long)t->repacks);
        assert_int_equal(t->repacks, (uint64_t)(NPACK * step));
        fl_optim_step(o);
    }
    fl_graph_free(t);
    for (size_t i = 0; i < pl.n; i++) free(bufs[i]);
    free(bufs);
    free(hv);
    fl_optim_free(o);
    fl_graph_free(r->g);
    free(r);
    fl_pstore_free(s);
}

int main(void) {
    dl_iterate_phdr(find_gomp, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embed_steps_allocate_nothing),
        cmocka_unit_test(test_in_graph_update_packs_follow),
        cmocka_unit_test(test_yolo_steps_allocate_nothing),
        cmocka_unit_test(test_packs_follow_parameter_writes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
