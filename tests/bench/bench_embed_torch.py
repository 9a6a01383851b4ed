#!/usr/bin/python3
"""PyTorch peer of tests/bench/bench_embed.c: the embedding model (timm EfficientNet at the given
width / depth multipliers, features_only taps LOCAL_TAP and 4 (the stage-7 output) -> DOLG ->
neck dropout / linear / BN -> ArcFace s 30 m 0.3 -> softmax CE) training steps at RES px, batch
BATCH, same thread count: forward, loss, backward, Adam step. DOLG, neck and ArcFace are the
parity-fixture definitions of tests/fixtures/gen_models_effnet.py (EmbedNet), with the backbone
and DOLG swapped for the benchmarked configuration. Best of REPS after one warm-up, in NCHW and
channels_last.
Prints "embed <img/s NCHW> <img/s channels_last> <trainable parameters>", or "skipped: <why>".
Usage: bench_embed_torch.py THREADS REPS BATCH RES VARIANT WIDTH DEPTH DIM DILATIONS EMB CLASSES
       DROPOUT DROP_PATH LOCAL_TAP   (VARIANT tf or native, DILATIONS comma-separated)
"""
import os
import sys
import time

try:
    import torch
    import torch.nn as nn
    import timm  # noqa: F401  (its absence is the skip)
    from timm.models.efficientnet import _gen_efficientnet

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
    import gen_models_effnet as fx  # noqa: E402
except Exception as ex:  # the C side prints the skip
    hint = "; install: /usr/bin/python3 -m pip install --no-deps --break-system-packages timm==0.9.16" \
        if "timm" in str(ex) else ""
    print("skipped: %s%s" % (ex, hint))
    sys.exit(0)


class NeckWithDropout(nn.Module):
    """fluke's neck (fl_neck_build): dropout -> fc -> bn; the fixture's Neck is fc -> bn."""

    def __init__(self, neck, p):
        super().__init__()
        self.drop = nn.Dropout(p)
        self.neck = neck

    def forward(self, x):
        return self.neck(self.drop(x))


def build(a):
    net = fx.EmbedNet(0.25, 0.25, a["dim"], a["emb"], a["classes"], 1, 0)
    kw = dict(bn_eps=1e-3, pad_type="same") if a["variant"] == "tf" else {}
    gen = "tf_efficientnet_b0" if a["variant"] == "tf" else "efficientnet_b0"
    net.backbone = _gen_efficientnet(gen, channel_multiplier=a["width"], depth_multiplier=a["depth"],
                                     features_only=True, out_indices=(a["local_tap"], 4), pretrained=False,
                                     drop_path_rate=a["drop_path"], **kw)
    cs, cd = net.backbone.feature_info.channels()
    dil = a["dilations"]
    net.dolg = fx.Dolg(cs, cd, a["dim"], [max(a["dim"] // 4, 1)] * len(dil), dil)
    net.neck = NeckWithDropout(fx.Neck(2 * a["dim"], a["emb"]), a["dropout"])
    nn.init.xavier_uniform_(net.head.weight)  # fluke's init (the fixture fills it by name)
    return net


def run(fmt, a):
    torch.manual_seed(0)
    m = build(a).to(memory_format=fmt).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    b, r = a["batch"], a["res"]
    x = torch.rand(b, 3, r, r).contiguous(memory_format=fmt)
    y = torch.arange(b, dtype=torch.int32) % a["classes"]
    margins = torch.full((a["classes"],), 0.3)

    def step():
        opt.zero_grad()
        loss = m(x, y, margins, 30.0)[0]
        loss.backward()
        opt.step()

    step()
    best = float("inf")
    for _ in range(a["reps"]):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return b / best, sum(p.numel() for p in m.parameters() if p.requires_grad)


if __name__ == "__main__":
    v = sys.argv[1:]
    if len(v) != 14:
        sys.exit(__doc__)
    a = {"threads": int(v[0]), "reps": int(v[1]), "batch": int(v[2]), "res": int(v[3]), "variant": v[4],
         "width": float(v[5]), "depth": float(v[6]), "dim": int(v[7]),
         "dilations": [int(d) for d in v[8].split(",")], "emb": int(v[9]), "classes": int(v[10]),
         "dropout": float(v[11]), "drop_path": float(v[12]), "local_tap": int(v[13])}
    torch.set_num_threads(a["threads"])
    ips_a, n_a = run(torch.contiguous_format, a)
    ips_b, n_b = run(torch.channels_last, a)
    assert n_a == n_b
    print("embed %.4f %.4f %d" % (ips_a, ips_b, n_a))
