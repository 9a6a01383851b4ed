/* Backends: where a graph runs and where its buffers live.
 *
 * How a backend plugs in. An op is defined once, backend-free: a name, a shape rule, flags
 * (which inputs backward needs) and an op id (runtime/ops/oplist.h). Its kernels are not part of
 * the definition. Each backend is one struct (runtime/backend_internal.h): a name, an op table
 * indexed by op id (a forward and a backward kernel per op, NULL where the backend has none),
 * supports_op(graph, node), a whole-graph compute entry (forward, backward), optionally
 * record/replay, and the backend's own buffer allocator and copies in and out of host memory.
 * The CPU backend (runtime/cpu/backend_cpu.c) is the reference: its table points at the plain
 * kernels in runtime/ops/<family>.c (fl_ref_<op>), every op has one, and every other backend is
 * checked against it. A new backend (runtime/cuda/backend_cuda.c today, with no kernels yet)
 * adds a file and a table and touches no op file: an op file never names a backend
 * (tests/integration/op_backend_lint.sh fails when one does). At fl_graph_compile every op node
 * the step needs is asked of supports_op; the first one the backend cannot run fails the compile
 * with the op's name, before anything is allocated.
 *
 * Who owns which buffer. The graph's backend owns the graph's memory: the planned arena (every
 * activation, gradient, saved statistic and scratch buffer, placed by runtime/planner.c) and each
 * input's value (and gradient, when asked for), all allocated through the backend when the
 * graph is compiled and freed with it. The caller owns host memory only and moves data across
 * with the copies below: fl_graph_set_input into an input, fl_graph_read / fl_graph_read_grad
 * out of a node. fl_graph_value / fl_graph_grad hand out the backend's pointer itself and so work
 * on host backends only (NULL elsewhere): they are the CPU fast path, for callers that fill a
 * batch in place. Parameters, their gradients and BN running statistics live in the parameter
 * store (fl_pstore, host memory, shared by the graphs built on it and seen by the optimizers and
 * checkpoints as fl_param); on the CPU a graph's parameter nodes point straight into the store.
 *
 * What a step is. After compile the graph is fixed: shapes, the op order, every buffer's place.
 * A step is: copy the batch in (fl_graph_set_input, or in place on the CPU), set the step's
 * randomness (fl_graph_set_rng), fl_graph_forward, fl_graph_backward, then read back what is
 * wanted (the loss, outputs; parameter gradients are in the store). Because nothing about the
 * graph changes between steps, a backend may record the step once (fl_graph_record) and replay
 * it: the CPU records the planned op list with its kernels resolved and, for backward, which
 * gradient each kernel overwrites, adds to or must zero first; a CUDA backend will capture a CUDA
 * graph. A replayed step is bitwise equal to an eager one (tests/unit/test_runtime_backend.c). */
#ifndef FLUKE_BACKEND_H
#define FLUKE_BACKEND_H

#include <stddef.h>

#include "artifacts/util.h"

typedef struct fl_backend fl_backend;
typedef struct fl_graph fl_graph;
typedef int fl_id;

/* The backends this binary knows. The CPU one always works; the CUDA one exists in every build
 * but supports no op yet, so compiling a graph for it fails naming the first op. */
const fl_backend *fl_backend_cpu(void);
const fl_backend *fl_backend_cuda(void);
const char *fl_backend_name(const fl_backend *b);
/* 1 when the backend's buffers are host memory (fl_graph_value works on its graphs). */
int fl_backend_is_host(const fl_backend *b);
/* 1 when b can run node x of g (forward, and backward when x needs a gradient), 0 when not, -1
 * for a bad id. Leaves (inputs, parameters) are always supported. */
int fl_backend_supports(const fl_backend *b, fl_graph *g, fl_id x);

/* The backend g runs on (CPU by default); only before compile. */
int fl_graph_set_backend(fl_graph *g, const fl_backend *b, fl_err *e);
const fl_backend *fl_graph_backend(const fl_graph *g);

/* Copies bytes (exactly the input's numel * element size) from host memory into input x's
 * storage. After compile. */
int fl_graph_set_input(fl_graph *g, fl_id x, const void *src, size_t bytes, fl_err *e);
/* Copies node x's value (after forward: outputs, the target, inputs; an intermediate only while
 * it is live) / gradient (after backward: parameters and inputs marked requires_grad) into host
 * memory; bytes must be the node's numel * element size. */
int fl_graph_read(fl_graph *g, fl_id x, void *dst, size_t bytes, fl_err *e);
int fl_graph_read_grad(fl_graph *g, fl_id x, void *dst, size_t bytes, fl_err *e);

/* Records the compiled step on the graph's backend: from then on fl_graph_forward and
 * fl_graph_backward replay the recording (same kernels, same buffers, same order as eager, so
 * bitwise the same results). -1 when the backend cannot record or g is not compiled. */
int fl_graph_record(fl_graph *g, fl_err *e);
/* 1 when g replays a recorded step. */
int fl_graph_recorded(const fl_graph *g);

#endif
