#!/usr/bin/python3
"""PyTorch peer of tests/bench/bench_effnet.c: timm efficientnet_b0 (1000 classes, drop path 0.2,
dropout 0.2) training steps at 224 px, batch BATCH, same thread count: forward, cross-entropy,
backward, AdamW step. Best of REPS after one warm-up, in NCHW and channels_last.
Prints "effnet <img/s NCHW> <img/s channels_last>", or "skipped: <why>".
Usage: bench_effnet_torch.py THREADS REPS BATCH [fp32|bf16]
(bf16: the steps under torch.autocast("cpu", dtype=torch.bfloat16), fp32 master weights)
"""
import contextlib
import sys
import time

try:
    import torch
    import timm
except Exception as ex:  # the C side prints the skip
    print("skipped: %s" % ex)
    sys.exit(0)


def run(fmt, reps, batch, bf16):
    torch.manual_seed(0)
    m = timm.create_model("efficientnet_b0", pretrained=False, drop_rate=0.2, drop_path_rate=0.2)
    m = m.to(memory_format=fmt).train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=1e-2)
    x = torch.rand(batch, 3, 224, 224).contiguous(memory_format=fmt)
    y = torch.arange(batch) % 1000

    def step():
        opt.zero_grad()
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            loss = torch.nn.functional.cross_entropy(m(x).float(), y)
        loss.backward()
        opt.step()

    step()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return batch / best


if __name__ == "__main__":
    threads, reps, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    bf16 = len(sys.argv) > 4 and sys.argv[4] == "bf16"
    torch.set_num_threads(threads)
    a = run(torch.contiguous_format, reps, batch, bf16)
    b = run(torch.channels_last, reps, batch, bf16)
    print("effnet %.4f %.4f" % (a, b))
