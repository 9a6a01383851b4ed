/* The op list: every op definition the graph knows, in id order (runtime/ops/oplist.h). Each
 * definition (name, shape rule, flags, id) lives beside its reference kernels in
 * runtime/ops/<family>.c; this list is what table-wide code (listings, coverage tests) walks. */
#include "runtime/graph_internal.h"

static const fl_op_def *const table[] = {
#define FL_OP(ID, nm) [FL_OP_##ID] = &fl_op_##nm,
#include "runtime/ops/oplist.h"
#undef FL_OP
    [FL_OP_COUNT] = NULL,
};

const fl_op_def *const *fl_op_table(void) { return table; }
