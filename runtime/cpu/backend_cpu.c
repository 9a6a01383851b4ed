/* The CPU backend: the reference every other backend is checked against. Its op table points at
 * the plain kernels beside each op definition (fl_ref_<op> in runtime/ops/<family>.c), one for
 * every op in runtime/ops/oplist.h; its buffers are host memory, so copies are memcpy and
 * fl_graph_value hands the buffers out directly. Compute is the eager schedule (graph.c,
 * autodiff.c) or, once recorded, the replay of the recorded step (replay.c). */
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/backend_cpu.h"

static const fl_op_impl *const cpu_ops[FL_OP_COUNT] = {
#define FL_OP(ID, nm) [FL_OP_##ID] = &fl_ref_##nm,
#include "runtime/ops/oplist.h"
#undef FL_OP
};

static int cpu_forward(fl_graph *g, fl_err *e) {
    return g->rec ? fl_cpu_replay_forward(g, e) : fl_graph_forward_eager(g, e);
}

static int cpu_backward(fl_graph *g, const void *seed, fl_err *e) {
    return g->rec ? fl_cpu_replay_backward(g, seed, e) : fl_autodiff_backward(g, seed, e);
}

static void *cpu_alloc(const fl_backend *b, size_t bytes, fl_err *e) {
    (void)b;
    size_t n = fl_arena_round(bytes ? bytes : 1); /* aligned_alloc wants a multiple */
    void *p = aligned_alloc(FL_ARENA_ALIGN, n);
    if (!p) {
        fl_errf(e, "cpu backend: cannot allocate %zu bytes", n);
        return NULL;
    }
    memset(p, 0, n);
    return p;
}

static void cpu_free(const fl_backend *b, void *p) {
    (void)b;
    free(p);
}

static int cpu_copy(const fl_backend *b, void *dst, const void *src, size_t bytes, fl_err *e) {
    (void)b, (void)e;
    if (dst != src && bytes) memcpy(dst, src, bytes);
    return 0;
}

static const fl_backend cpu = {
    .name = "cpu",
    .host = 1,
    .ops = cpu_ops,
    .supports_op = fl_backend_has_kernels,
    .forward = cpu_forward,
    .backward = cpu_backward,
    .record = fl_cpu_record,
    .release = fl_cpu_release,
    .buf_alloc = cpu_alloc,
    .buf_free = cpu_free,
    .copy_in = cpu_copy,
    .copy_out = cpu_copy,
};

const fl_backend *fl_backend_cpu(void) { return &cpu; }
