#!/usr/bin/python3
"""Reference training runs in PyTorch for FedEdge's parity tests.

Builds a small torch model, exports its inference graph to ONNX (the engine's input), generates a
deterministic data set, trains K steps on consecutive batches (batch k = rows [k*B, (k+1)*B), the order of
`fededge train --shuffle false`) and writes what the C# test compares against:

  OUT/model.onnx        inference graph with the initial weights (torch.onnx.export, TrainingMode.EVAL,
                        do_constant_folding=False so initializers keep their parameter names)
  OUT/x.npy, OUT/y.npy  the data (float32 features, int64 labels)
  OUT/initial/NAME.npy  initial value of every trained parameter, keyed by ONNX initializer name (float32)
  OUT/final/NAME.npy    value after K steps (float64: PyTorch ran in float64 from the same float32 start)
  OUT/buffers/NAME.npy  BatchNorm running statistics after K steps (float64), where the model has them
  OUT/losses.npy        data loss of each step before its update, without the FedProx term (float64)
  OUT/final32/, OUT/buffers32/  with --float32-floor: the same steps run by PyTorch in float32
  OUT/case.json         the settings, the parameter names and the optimizer semantics below

Optimizer semantics (PyTorch's, which the engine must match):
  loss    = mean cross-entropy (or mean squared error against one-hot labels over all elements)
            + mu/2 * ||w - w0||^2 (FedProx,
            w0 = the initial weights, i.e. the global model the round started from)
  g       = d loss / d w;  if clip > 0: g *= min(1, clip / (||g||_2 over all parameters + 1e-6))
  g      += weight_decay * w            (coupled L2, as torch.optim.SGD/Adam's weight_decay)
  sgd:      w -= lr * g
  momentum: v = momentum * v + g (v = g at step 1);  w -= lr * v
  adam:     m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)

Run with Debian's /usr/bin/python3 (python3-torch, python3-onnx, python3-numpy).
"""
import argparse
import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Mlp(nn.Module):
    """Flatten -> Gemm -> Relu -> Gemm."""

    sample_shape = (1, 8, 8)
    classes = 10

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(self.flatten(x))))


class Cnn(nn.Module):
    """Conv (pad) -> Relu -> MaxPool -> BatchNorm -> Conv (dilation) -> Relu -> Conv (stride 2) -> Relu -> AvgPool
    (padded: Pad + AveragePool) -> Flatten, concatenated with a GlobalAveragePool branch -> Gemm. BatchNorm follows the pool because the EVAL-mode exporter folds a BatchNorm that directly
    follows a Conv into the Conv's weights, leaving no BatchNormalization node to train."""

    sample_shape = (1, 12, 12)
    classes = 10

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, kernel_size=3, stride=1, padding=2, dilation=2)
        self.conv3 = nn.Conv2d(6, 8, kernel_size=2, stride=2, padding=0, bias=False)
        self.fc = nn.Linear(8 + 6, 10)
        # Running statistics as a trained model would have them. Fresh ones (zeros, ones) equal the fresh
        # BatchNorm bias and weight, and torch 1.13's exporter then deduplicates them into Identity(bn1.bias),
        # Identity(bn1.weight): the exported graph would read the trained weight as its running variance.
        with torch.no_grad():
            self.bn1.running_mean.uniform_(-0.1, 0.1)
            self.bn1.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        x = self.bn1(F.max_pool2d(F.relu(self.conv1(x)), 2))  # 4 x 6 x 6
        h = F.relu(self.conv2(x))  # 6 x 6 x 6
        x = F.relu(self.conv3(h))  # 8 x 3 x 3
        x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1)  # 8 x 2 x 2
        x = F.avg_pool2d(x, kernel_size=2)  # 8 x 1 x 1
        g = F.adaptive_avg_pool2d(h, 1)  # GlobalAveragePool: 6 x 1 x 1
        return self.fc(torch.cat([torch.flatten(x, 1), torch.flatten(g, 1)], dim=1))


class Lenet(nn.Module):
    """FedEdge's zoo `cnn` (NIID-Bench SimpleCNN) on 28 x 28 images; with --data fashion-mnist, real images."""

    sample_shape = (1, 28, 28)
    classes = 10

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(-1, 16 * 4 * 4)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Mixed(nn.Module):
    """Sigmoid, Tanh, LeakyRelu, Concat, Reshape (through Shape arithmetic), Transpose, Softmax, Mul, MatMul."""

    sample_shape = (16,)
    classes = 5

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 12)
        self.mix = nn.Parameter(torch.empty(36, 36))
        nn.init.uniform_(self.mix, -1 / 6, 1 / 6)
        self.fc2 = nn.Linear(36, 5)

    def forward(self, x):
        h = self.fc1(x)
        c = torch.cat([torch.sigmoid(h), torch.tanh(h), F.leaky_relu(h, 0.1)], dim=1)  # B x 36
        r = c.view(c.size(0), 6, 6).transpose(1, 2)  # Shape/Gather/Unsqueeze/Concat -> Reshape; Transpose
        s = torch.softmax(r, dim=2) * r  # Softmax, Mul
        z = torch.matmul(s.reshape(-1, 36), self.mix)  # MatMul
        return self.fc2(z)


class Depthwise(nn.Module):
    """Grouped and depthwise Conv: a grouped 3x3 (2 groups), a depthwise 3x3 with stride 2, a depthwise 5x5 whose
    kernel overhangs its 2x2 map (padding 2, as MNASNet's last stages at 64 x 64), ReLU6, a 1x1 Conv, mean pooling."""

    sample_shape = (4, 8, 8)
    classes = 5

    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.dw1 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.dw2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=8)
        self.dw3 = nn.Conv2d(16, 16, 5, padding=2, groups=16, bias=False)
        self.project = nn.Conv2d(16, 12, 1)
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        x = F.relu6(self.grouped(x))
        x = torch.tanh(self.dw1(x))
        x = torch.tanh(self.dw2(x))  # 16 x 2 x 2
        x = self.project(torch.tanh(self.dw3(x)))
        return self.fc(x.mean([2, 3]))


def torchvision_model(name, **kwargs):
    """A torchvision architecture with 10 classes on 3 x 32 x 32 images (--size changes the side), dropout and
    stochastic depth at 0 so that PyTorch's training step is deterministic, and BatchNorm running statistics as a
    trained model would have them (not the fresh zeros and ones)."""

    def create(size):
        import torchvision
        model = getattr(torchvision.models, name)(num_classes=10, **kwargs)
        for module in model.modules():
            if isinstance(module, nn.Dropout) or type(module).__name__ == "StochasticDepth":
                module.p = 0.0
            if isinstance(module, nn.BatchNorm2d):
                with torch.no_grad():
                    module.running_mean.uniform_(-0.1, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
        model.sample_shape = (3, size, size)
        model.classes = 10
        return model

    create.torchvision = True
    return create


MODELS = {"mlp": Mlp, "cnn": Cnn, "mixed": Mixed, "lenet": Lenet, "depthwise": Depthwise,
          "mobilenet_v2": torchvision_model("mobilenet_v2"),
          "mobilenet_v2_035": torchvision_model("mobilenet_v2", width_mult=0.35),
          "mobilenet_v3_small": torchvision_model("mobilenet_v3_small"),
          "shufflenet_v2_x0_5": torchvision_model("shufflenet_v2_x0_5"),
          "mnasnet0_5": torchvision_model("mnasnet0_5"),
          "efficientnet_b0": torchvision_model("efficientnet_b0"),
          "squeezenet1_1": torchvision_model("squeezenet1_1"),
          "resnet18": torchvision_model("resnet18")}


def train(model, x, y, a, dtype):
    """The steps of the module docstring in the given precision; returns each step's data loss."""
    model = model.to(dtype).train()
    global_weights = {k: v.detach().clone() for k, v in model.named_parameters()}
    weights = list(model.parameters())
    if a.optimizer == "adam":
        opt = torch.optim.Adam(weights, lr=a.lr, weight_decay=a.weight_decay)
    else:
        opt = torch.optim.SGD(weights, lr=a.lr, momentum=a.momentum if a.optimizer == "momentum" else 0.0,
                              weight_decay=a.weight_decay)
    losses = []
    for k in range(a.steps):
        xb = torch.from_numpy(x[k * a.batch:(k + 1) * a.batch]).to(dtype)
        yb = torch.from_numpy(y[k * a.batch:(k + 1) * a.batch])
        out = model(xb)
        if a.loss == "cross-entropy":
            loss = F.cross_entropy(out, yb)
        else:
            loss = F.mse_loss(out, F.one_hot(yb, model.classes).to(dtype))
        losses.append(loss.item())
        if a.prox_mu > 0:
            loss = loss + a.prox_mu / 2 * sum(((w - global_weights[name]) ** 2).sum() for name, w in model.named_parameters())
        opt.zero_grad()
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(weights, a.clip)
        opt.step()
    return losses


def save(model, buffers, final_dir, buffer_dir):
    """Parameters and the BatchNorm statistics that are ONNX initializers, as float64, keyed by name."""
    os.makedirs(final_dir, exist_ok=True)
    os.makedirs(buffer_dir, exist_ok=True)
    for name, value in model.named_parameters():
        np.save(os.path.join(final_dir, name + ".npy"), value.detach().to(torch.float64).numpy())
    for name in buffers:
        np.save(os.path.join(buffer_dir, name + ".npy"), dict(model.named_buffers())[name].detach().to(torch.float64).numpy())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(MODELS), required=True)
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], default="sgd")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--clip", type=float, default=0.0, help="max global gradient norm (0: off)")
    p.add_argument("--prox-mu", type=float, default=0.0, help="FedProx mu (0: off)")
    p.add_argument("--loss", choices=["cross-entropy", "mse"], default="cross-entropy")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="engine threads (batch split across them); the reference ignores it")
    p.add_argument("--data", choices=["random", "fashion-mnist"], default="random",
                   help="random normal features and labels, or the first steps*batch Fashion-MNIST training images")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="precision of the PyTorch run (the ONNX model and data are float32 either way)")
    p.add_argument("--compare", choices=["value", "step"], default="value",
                   help="the test's error measure: relative to the tensor or to its change (the reference ignores it)")
    p.add_argument("--float32-floor", type=int, choices=[0, 1], default=0,
                   help="1: also run the steps in float32 (final32/, buffers32/): what float32 arithmetic itself reaches")
    p.add_argument("--size", type=int, default=32, help="image side of the torchvision models")
    p.add_argument("--out", required=True)
    a = p.parse_args()

    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    factory = MODELS[a.model]
    training_export = getattr(factory, "torchvision", False)
    model = factory(a.size) if training_export else factory()
    os.makedirs(a.out, exist_ok=True)
    for sub in ("initial", "final", "buffers"):
        os.makedirs(os.path.join(a.out, sub), exist_ok=True)

    n = a.steps * a.batch
    if a.data == "fashion-mnist":
        import gzip
        d = "/usr/share/datasets/fashion-mnist/"
        with gzip.open(d + "train-images-idx3-ubyte.gz") as f:
            pixels = np.frombuffer(f.read(), np.uint8, offset=16)[: n * 784]
        with gzip.open(d + "train-labels-idx1-ubyte.gz") as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)[:n].astype(np.int64)
        x = (pixels.astype(np.float32) / np.float32(255)).reshape(n, *model.sample_shape)
    else:
        x = rng.standard_normal((n, *model.sample_shape)).astype(np.float32)
        y = rng.integers(0, model.classes, size=n).astype(np.int64)
    np.save(os.path.join(a.out, "x.npy"), x)
    np.save(os.path.join(a.out, "y.npy"), y)

    # Export the float32 graph with the initial weights. The torchvision models are exported as users export them
    # for training (TrainingMode.TRAINING): in EVAL mode the exporter folds each Conv -> BatchNorm pair into the
    # Conv, which leaves no BatchNorm to train. Tracing in training mode runs a forward pass that updates the
    # running statistics, so PyTorch's run starts from the statistics the ONNX file holds (set below).
    model.train() if training_export else model.eval()
    onnx_path = os.path.join(a.out, "model.onnx")
    torch.onnx.export(
        model, torch.from_numpy(x[: a.batch]), onnx_path,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=a.opset, training=torch.onnx.TrainingMode.TRAINING if training_export else torch.onnx.TrainingMode.EVAL,
        do_constant_folding=False, export_params=True)

    import onnx  # after export: only to map parameters to initializer names and check them
    import onnx.numpy_helper
    graph = onnx.load(onnx_path).graph
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    params = dict(model.named_parameters())
    missing = [k for k in params if k not in initializers]
    if missing:
        sys.exit(f"parameters {missing} are not ONNX initializers by name; initializers: {sorted(initializers)}")
    for name, value in params.items():
        if not np.array_equal(initializers[name], value.detach().numpy()):
            sys.exit(f"initializer {name} differs from the torch parameter")
        np.save(os.path.join(a.out, "initial", name + ".npy"), value.detach().numpy())
    buffers = {k: v for k, v in model.named_buffers() if k in initializers}
    with torch.no_grad():
        for name, value in buffers.items():
            value.copy_(torch.from_numpy(initializers[name]))

    # Train in the requested precision from the float32 start; with --float32-floor, again in float32 from the same
    # start (deep BatchNorm + ReLU networks at initialisation amplify rounding so much that PyTorch's own float32 run
    # can differ from its float64 run by more than 1e-4 of the step: the test then knows what float32 can reach).
    start = copy.deepcopy(model)
    losses = train(model, x, y, a, torch.float64 if a.dtype == "float64" else torch.float32)
    save(model, buffers, os.path.join(a.out, "final"), os.path.join(a.out, "buffers"))
    np.save(os.path.join(a.out, "losses.npy"), np.array(losses, dtype=np.float64))
    if a.float32_floor:
        train(start, x, y, a, torch.float32)
        save(start, buffers, os.path.join(a.out, "final32"), os.path.join(a.out, "buffers32"))

    case = {k: v for k, v in vars(a).items() if k != "out"}
    case.update(parameters=list(params), buffers=list(buffers), sample_shape=list(model.sample_shape),
                classes=model.classes, ops=sorted({node.op_type for node in graph.node}), torch=torch.__version__)
    with open(os.path.join(a.out, "case.json"), "w") as f:
        json.dump(case, f, indent=1)
    print(json.dumps({"losses": losses, "ops": case["ops"]}))


if __name__ == "__main__":
    main()
