#!/usr/bin/python3
"""PyTorch peer of tests/bench/bench_yolo.c: YOLOv5 (depth 0.33, width WIDTH, NC classes) training
steps at IMG px, batch BATCH, with the same thread count: forward, ComputeLoss on the same
synthetic targets, backward, SGD (nesterov, momentum 0.937, weight decay 5e-4) step. The model and
loss are the faithful ports in tests/fixtures/gen_models_yolo.py. Best of REPS after two warm-ups.
Prints "yolo <img/s NCHW> <img/s channels_last>".
Usage: bench_yolo_torch.py THREADS REPS BATCH [IMG WIDTH NC] (default 320 0.25 80)
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
import gen_models_yolo as y  # noqa: E402


def targets(batch, nc):
    """4 boxes per image, the formula bench_yolo.c uses."""
    rows = []
    for b in range(batch):
        for k in range(4):
            rows.append([b, (b * 7 + k * 13) % nc, 0.2 + 0.2 * k, 0.3 + 0.1 * ((b + k) % 4),
                         0.05 + 0.07 * k, 0.08 + 0.05 * ((b + 2 * k) % 5)])
    return torch.tensor(rows, dtype=torch.float32)


def run(fmt, reps, batch, img, width, nc, bf16=False):
    torch.manual_seed(0)
    m = y.Model(0.33, width, nc).to(memory_format=fmt)
    m.train()
    anchors = m.model[-1].anchors.clone()
    hyp = {"box": 0.05, "cls": 0.5, "obj": 1.0 * (img / 640) ** 2, "anchor_t": 4.0, "label_smoothing": 0.0}
    loss_fn = y.ComputeLoss(anchors, nc, hyp)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.937, nesterov=True, weight_decay=5e-4)
    x = torch.rand(batch, 3, img, img).contiguous(memory_format=fmt)
    t = targets(batch, nc)

    def step():
        opt.zero_grad()
        if bf16:  # the network under autocast, the loss in float32 (as fluke's autocast run)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                p = m(x)
            loss, _ = loss_fn([q.float() for q in p], t)
        else:
            loss, _ = loss_fn(m(x), t)
        loss.backward()
        opt.step()

    step()
    step()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return batch / best


if __name__ == "__main__":
    threads, reps, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    img, width, nc = (int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])) if len(sys.argv) > 6 else (320, 0.25, 80)
    bf16 = len(sys.argv) > 7 and sys.argv[7] == "bf16"
    torch.set_num_threads(threads)
    a = run(torch.contiguous_format, reps, batch, img, width, nc, bf16)
    b = run(torch.channels_last, reps, batch, img, width, nc, bf16)
    print("yolo %.4f %.4f" % (a, b))
