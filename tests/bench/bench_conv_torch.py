#!/usr/bin/python3
"""PyTorch peer of tests/bench/bench_conv.c: the same convolutions, forward and backward (input
and weight gradients, no bias), timed best-of-N on the CPU with a given thread count, in NCHW
(PyTorch's default) and channels_last. Prints one line per case:
    <name> <fwd img/s nchw> <bwd img/s nchw> <fwd img/s channels_last> <bwd img/s channels_last>
Invoked by bench_conv with the case list on the command line:
    bench_conv_torch.py THREADS REPS name:N:H:W:Ci:Co:k:stride:pad:groups ...
"""
import sys
import time

import torch


def best_of(fn, reps):
    fn()  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_case(spec, reps):
    name, *nums = spec.split(":")
    N, H, W, Ci, Co, k, s, p, g = map(int, nums)
    out = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(N, Ci, H, W, generator=gen).contiguous(memory_format=fmt)
        w = torch.randn(Co, Ci // g, k, k, generator=gen).contiguous(memory_format=fmt)
        with torch.no_grad():
            y = torch.nn.functional.conv2d(x, w, None, s, p, 1, g)
        dy = torch.randn(y.shape, generator=gen).contiguous(memory_format=fmt)

        def fwd():
            with torch.no_grad():
                torch.nn.functional.conv2d(x, w, None, s, p, 1, g)

        def bwd():
            torch.ops.aten.convolution_backward(dy, x, w, None, [s, s], [p, p], [1, 1], False,
                                                [0, 0], g, [True, True, False])

        out += [N / best_of(fwd, reps), N / best_of(bwd, reps)]
    print(name, " ".join(f"{v:.2f}" for v in out), flush=True)


def main():
    threads, reps = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    for spec in sys.argv[3:]:
        run_case(spec, reps)


if __name__ == "__main__":
    main()
