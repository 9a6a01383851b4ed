#!/usr/bin/python3
"""PyTorch peer of tests/bench/bench_runtime.c, same shapes, same thread count, best of REPS:
  conv    a graph-level 3x3 conv (64->64, 56x56, batch 8, no bias): forward + backward
          (input and weight gradients) per iteration
  mbconv  one training step of an EfficientNet MBConv block with SE (timm layout: 40 -> 240 ->
          40 channels, 5x5 depthwise, SE 10, BN, SiLU, residual; 28x28, batch 8): forward, loss
          = mean, backward, AdamW step
Prints "<name> <img/s NCHW> <img/s channels_last>" per case.
Usage: bench_runtime_torch.py THREADS REPS
"""
import sys
import time

import torch
import torch.nn.functional as F


def best_of(fn, reps):
    fn()
    fn()  # warm-up (allocator, OpenMP pools)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def conv_case(fmt, reps):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 64, 56, 56, generator=g).contiguous(memory_format=fmt).requires_grad_(True)
    w = (torch.randn(64, 64, 3, 3, generator=g) * 0.05).contiguous(memory_format=fmt).requires_grad_(True)

    def step():
        x.grad = None
        w.grad = None
        F.conv2d(x, w, None, 1, 1).sum().backward()
    return 8 / best_of(step, reps)


def mbconv_case(fmt, reps):
    g = torch.Generator().manual_seed(0)
    cin, mid, se, k, N, H = 40, 240, 10, 5, 8, 28
    p = {"pw": torch.randn(mid, cin, 1, 1, generator=g) * 0.1, "dw": torch.randn(mid, 1, k, k, generator=g) * 0.1,
         "r": torch.randn(se, mid, 1, 1, generator=g) * 0.1, "rb": torch.zeros(se),
         "e": torch.randn(mid, se, 1, 1, generator=g) * 0.1, "eb": torch.zeros(mid),
         "pwl": torch.randn(cin, mid, 1, 1, generator=g) * 0.1}
    for n, c in (("bn1", mid), ("bn2", mid), ("bn3", cin)):
        p[n + ".w"], p[n + ".b"] = torch.ones(c), torch.zeros(c)
    p = {n: (v.contiguous(memory_format=fmt) if v.dim() == 4 else v).requires_grad_(True) for n, v in p.items()}
    stats = {n: (torch.zeros(c), torch.ones(c)) for n, c in (("bn1", mid), ("bn2", mid), ("bn3", cin))}
    x = torch.randn(N, cin, H, H, generator=g).contiguous(memory_format=fmt)
    opt = torch.optim.AdamW(list(p.values()), lr=1e-3)

    def bn(h, n):
        return F.batch_norm(h, stats[n][0], stats[n][1], p[n + ".w"], p[n + ".b"], True, 0.1, 1e-3)

    def step():
        opt.zero_grad()
        h = F.silu(bn(F.conv2d(x, p["pw"]), "bn1"))
        h = F.silu(bn(F.conv2d(h, p["dw"], None, 1, k // 2, 1, mid), "bn2"))
        s = h.mean((2, 3), keepdim=True)
        s = torch.sigmoid(F.conv2d(F.silu(F.conv2d(s, p["r"], p["rb"])), p["e"], p["eb"]))
        h = bn(F.conv2d(h * s, p["pwl"]), "bn3") + x
        h.mean().backward()
        opt.step()
    return N / best_of(step, reps)


def main():
    threads, reps = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    for name, fn in (("conv", conv_case), ("mbconv", mbconv_case)):
        r = [fn(fmt, reps) for fmt in (torch.contiguous_format, torch.channels_last)]
        print(name, " ".join(f"{v:.2f}" for v in r), flush=True)


if __name__ == "__main__":
    main()
