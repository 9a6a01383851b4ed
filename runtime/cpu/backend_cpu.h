/* The CPU backend's recorder (runtime/cpu/replay.c), used by runtime/cpu/backend_cpu.c. */
#ifndef FLUKE_CPU_BACKEND_CPU_H
#define FLUKE_CPU_BACKEND_CPU_H

#include "runtime/backend_internal.h"

/* Records g's compiled step into g->rec: the needed op nodes' forward kernels in order, and the
 * backward schedule autodiff would run (kernels, beta per input, gradients to zero first). */
int fl_cpu_record(fl_graph *g, fl_err *e);
int fl_cpu_replay_forward(fl_graph *g, fl_err *e);
int fl_cpu_replay_backward(fl_graph *g, const void *seed, fl_err *e);
void fl_cpu_release(fl_graph *g);

#endif
