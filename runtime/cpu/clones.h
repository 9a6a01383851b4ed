/* FL_VEC_CLONES: a function built for several x86-64 vector widths (AVX-512F, AVX2 and the
 * baseline's SSE2), one picked at load time (ifunc) by the CPU it runs on. For the compute-bound
 * element-wise kernels (SiLU and sigmoid through fl_fast_expf) the default target's 4-wide
 * vectors are the whole cost: the AVX2 clone of SiLU forward ran 3x faster here.
 *
 * The clones compute the same IEEE operations in the same order per element, only more lanes at
 * once: the project builds in ISO C mode (-std=c11 implies -ffp-contract=off, so no FMA
 * contraction) without -ffast-math (no reassociation). Every CPU therefore gets the same bits;
 * tests/unit/test_runtime_graph.c compares the kernels against a scalar loop bit for bit on
 * whichever clone the machine picks. Only for loops with no reduction across lanes. */
#ifndef FLUKE_CPU_CLONES_H
#define FLUKE_CPU_CLONES_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FL_VEC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FL_VEC_CLONES
#endif

#endif
