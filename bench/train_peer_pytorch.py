#!/usr/bin/python3
"""PyTorch peer of `fededge bench train`: trains the zoo's mlp or cnn for the same batch size, number of
steps and threads, and prints the throughput in one parseable line:

  RESULT framework=pytorch-1.13.0 model=cnn batch=64 threads=2 steps=500 data=random samples_per_s=... steps_per_s=... ms_per_step=...

Models (same as FedEdge's zoo, shared/FedEdge.Training/Zoo/ModelZoo.cs):
  mlp: Flatten, Linear 784-128, ReLU, Linear 128-10
  cnn: NIID-Bench SimpleCNN: Conv 6@5x5, ReLU, MaxPool 2, Conv 16@5x5, ReLU, MaxPool 2, Linear 256-120, ReLU,
       Linear 120-84, ReLU, Linear 84-10
  mobilenet_v2_035, mobilenet_v3_small, shufflenet_v2_x0_5, mnasnet0_5, efficientnet_b0: torchvision's (python3-torchvision),
       10 classes, on 3 x SIZE x SIZE images; --export writes the ONNX file for `fededge bench train --model FILE`
Each timed step is what FedEdge's step does: gather a batch, forward, cross-entropy, backward, SGD with
momentum 0.9 update. Warm-up steps run first and are not timed.

Run with Debian's /usr/bin/python3 (python3-torch, python3-numpy):
  /usr/bin/python3 bench/train_peer_pytorch.py --model cnn --batch 64 --steps 500 --threads 2
"""
import argparse
import gzip
import json
import os
import resource
import time

import numpy as np
import torch
import torch.nn as nn

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


TORCHVISION = {"mobilenet_v2_035": ("mobilenet_v2", {"width_mult": 0.35}), "mobilenet_v3_small": ("mobilenet_v3_small", {}),
               "shufflenet_v2_x0_5": ("shufflenet_v2_x0_5", {}), "mnasnet0_5": ("mnasnet0_5", {}),
               "efficientnet_b0": ("efficientnet_b0", {})}


def build(name):
    if name in TORCHVISION:
        import torchvision  # Debian's python3-torchvision
        arch, kwargs = TORCHVISION[name]
        return getattr(torchvision.models, arch)(num_classes=10, **kwargs)
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 4 * 4, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    raise SystemExit(f"unknown model {name!r} (mlp, cnn)")


def load_data(kind, n, rng, shape=(1, 28, 28)):
    if kind == "random":
        return rng.random((n, *shape), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64)
    images = os.path.join(FASHION_MNIST, "train-images-idx3-ubyte.gz")
    labels = os.path.join(FASHION_MNIST, "train-labels-idx1-ubyte.gz")
    if not os.path.exists(images):
        raise SystemExit(f"{images} not found: install Debian's dataset-fashion-mnist (scripts/install-deps.sh)")
    with gzip.open(images) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(labels) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return (x.astype(np.float32) / np.float32(255)), y


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["mlp", "cnn", *TORCHVISION], default="cnn")
    p.add_argument("--size", type=int, default=96, help="image side of the torchvision models (3 channels)")
    p.add_argument("--export", help="torchvision models: also write the model as ONNX here (training-mode export, "
                                    "opset 17), the file `fededge bench train --model` takes")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", choices=["random", "fashion-mnist"], default="random")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the result as JSON to this file")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    vision = a.model in TORCHVISION
    x, y = load_data(a.data, max(a.batch * 64, a.batch), rng, (3, a.size, a.size) if vision else (1, 28, 28))
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    model = build(a.model).train()
    if vision and a.export:
        torch.onnx.export(model, x_t[: a.batch], a.export, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, opset_version=17,
                          training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.from_numpy(rng.permutation(len(y)))

    def step(k):
        start = (k * a.batch) % (len(y) - a.batch + 1)
        idx = order[start:start + a.batch]
        xb, yb = x_t.index_select(0, idx), y_t.index_select(0, idx)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    for k in range(a.warmup):
        step(k)
    t0 = time.perf_counter()
    for k in range(a.steps):
        loss = step(a.warmup + k)
    loss = float(loss)  # synchronise before stopping the clock
    elapsed = time.perf_counter() - t0

    result = {
        "framework": f"pytorch-{torch.__version__}", "model": a.model, "batch": a.batch, "threads": a.threads,
        "steps": a.steps, "data": a.data, "samples_per_s": a.steps * a.batch / elapsed,
        "steps_per_s": a.steps / elapsed, "ms_per_step": 1000 * elapsed / a.steps, "last_loss": loss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print("RESULT " + " ".join(f"{k}={v:.1f}" if isinstance(v, float) and k != "last_loss"
                               else f"{k}={v}" for k, v in result.items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
