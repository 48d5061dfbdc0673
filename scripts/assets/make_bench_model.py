"""Export a YOLOv8n-shaped detector with random weights to ONNX, for SPEED measurements only.

    python3 scripts/assets/make_bench_model.py [--out .cache/bench-model] [--classes 80] [--input-size 640]

Writes yolov8n-bench.onnx (input "images" [B, 3, 640, 640] float32, dynamic batch; output "output0"
[B, 84, 8400]) and labels.txt (class0..class79). The network is YOLOv8n's layer for layer (backbone,
PAN neck, decoupled head with DFL box decoding; 3.16M parameters before Conv+BN fusion, as
ultralytics reports for yolov8n.yaml), so it costs what YOLOv8n costs to run. Its weights are random
(seed 0: the file is the same on every run), so its detections are meaningless: never use it to
judge accuracy. The class biases get YOLOv8's own prior (sigmoid ~ 1e-4 to 1e-3), so random
weights give (almost) no boxes above a normal score threshold: postprocessing costs what it costs on
a quiet scene.
No ultralytics dependency: the architecture is written out below in plain torch.
"""
from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path

import onnx

import torch
from torch import nn

SEED = 0
OPSET = 17
REG_MAX = 16  # DFL bins per box side
STRIDES = (8, 16, 32)


class Conv(nn.Module):
    """Conv2d + BatchNorm + SiLU ('same' padding), YOLOv8's basic block."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        self.cv1 = Conv(c, c, 3)
        self.cv2 = Conv(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP bottleneck with two convolutions (YOLOv8)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False) -> None:
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1)
        self.cv2 = Conv(c_ * 4, c2, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class Detect(nn.Module):
    """Decoupled head: per level a box branch (4 x REG_MAX DFL logits) and a class branch;
    output [B, 4 + nc, N] with boxes as cx, cy, w, h in input pixels and sigmoid class scores."""

    def __init__(self, nc: int, ch: tuple[int, ...], input_size: int) -> None:
        super().__init__()
        self.nc = nc
        c2, c3 = max(16, ch[0] // 4, REG_MAX * 4), max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * REG_MAX, 1))
                                 for x in ch)
        self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)
        self.dfl = nn.Conv2d(REG_MAX, 1, 1, bias=False).requires_grad_(False)
        self.dfl.weight.data[:] = torch.arange(REG_MAX, dtype=torch.float32).view(1, REG_MAX, 1, 1)
        anchors, strides = [], []
        for s in STRIDES:
            g = input_size // s
            sy, sx = torch.meshgrid(torch.arange(g) + 0.5, torch.arange(g) + 0.5, indexing="ij")
            anchors.append(torch.stack((sx, sy), -1).view(-1, 2))
            strides.append(torch.full((g * g, 1), float(s)))
        self.register_buffer("anchors", torch.cat(anchors).T.contiguous())  # [2, N]
        self.register_buffer("strides", torch.cat(strides).T.contiguous())  # [1, N]
        for a, b, s in zip(self.cv2, self.cv3, STRIDES):  # YOLOv8's bias prior (Detect.bias_init)
            a[-1].bias.data[:] = 1.0
            b[-1].bias.data[:nc] = math.log(5 / nc / (input_size / s) ** 2)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        b = feats[0].shape[0]
        x = torch.cat([torch.cat((cv2(f), cv3(f)), 1).view(b, 4 * REG_MAX + self.nc, -1)
                       for f, cv2, cv3 in zip(feats, self.cv2, self.cv3)], 2)
        box, cls = x.split((4 * REG_MAX, self.nc), 1)
        n = box.shape[2]
        dist = self.dfl(box.view(b, 4, REG_MAX, n).transpose(2, 1).softmax(1)).view(b, 4, n)
        lt, rb = dist.chunk(2, 1)
        x1y1, x2y2 = self.anchors - lt, self.anchors + rb
        xywh = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * self.strides
        return torch.cat((xywh, cls.sigmoid()), 1)


class YoloV8n(nn.Module):
    """yolov8n.yaml: depth 0.33, width 0.25, max channels 1024."""

    def __init__(self, nc: int = 80, input_size: int = 640) -> None:
        super().__init__()
        self.b0 = nn.Sequential(Conv(3, 16, 3, 2), Conv(16, 32, 3, 2), C2f(32, 32, 1, True),
                                Conv(32, 64, 3, 2), C2f(64, 64, 2, True))  # P3/8
        self.b1 = nn.Sequential(Conv(64, 128, 3, 2), C2f(128, 128, 2, True))  # P4/16
        self.b2 = nn.Sequential(Conv(128, 256, 3, 2), C2f(256, 256, 1, True), SPPF(256, 256, 5))  # P5/32
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.h12 = C2f(384, 128, 1)
        self.h15 = C2f(192, 64, 1)
        self.d16 = Conv(64, 64, 3, 2)
        self.h18 = C2f(192, 128, 1)
        self.d19 = Conv(128, 128, 3, 2)
        self.h21 = C2f(384, 256, 1)
        self.detect = Detect(nc, (64, 128, 256), input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p3 = self.b0(x)
        p4 = self.b1(p3)
        p5 = self.b2(p4)
        n12 = self.h12(torch.cat((self.up(p5), p4), 1))
        n15 = self.h15(torch.cat((self.up(n12), p3), 1))
        n18 = self.h18(torch.cat((self.d16(n15), n12), 1))
        n21 = self.h21(torch.cat((self.d19(n18), p5), 1))
        return self.detect([n15, n18, n21])


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm into its convolution (what ultralytics does before export)."""
    for m in model.modules():
        if isinstance(m, Conv):
            conv, bn = m.conv, m.bn
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              bias=True)
            fused.weight.data = conv.weight.data * scale.view(-1, 1, 1, 1)
            fused.bias.data = bn.bias.data - bn.running_mean * scale
            m.conv, m.bn = fused, nn.Identity()
    return model


def build(nc: int, input_size: int) -> tuple[nn.Module, int]:
    """The seeded random model in eval mode, fused; and its parameter count before fusion."""
    torch.manual_seed(SEED)
    model = YoloV8n(nc, input_size)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    with torch.no_grad():  # BN statistics that keep activations in a sane range, still deterministic
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return fuse_conv_bn(model.eval()), params


def _fix_output_shape(path: Path, rows: int, anchors: int) -> None:
    """The exporter leaves the output's row count symbolic; state [batch, 4 + nc, N] as YOLOv8 exports do."""
    model = onnx.load(str(path))
    dims = model.graph.output[0].type.tensor_type.shape.dim
    dims[1].ClearField("dim_param")
    dims[1].dim_value = rows
    dims[2].ClearField("dim_param")
    dims[2].dim_value = anchors
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export(out_dir: Path, nc: int, input_size: int) -> Path:
    if input_size % 32:
        raise SystemExit(f"--input-size {input_size} must be a multiple of 32")
    out_dir.mkdir(parents=True, exist_ok=True)
    model, params = build(nc, input_size)
    path = out_dir / "yolov8n-bench.onnx"
    dummy = torch.zeros(1, 3, input_size, input_size)
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter: the torch.export one needs onnxscript, which is not installed
        warnings.simplefilter("ignore", DeprecationWarning)
        anchors = model(dummy).shape[2]
        torch.onnx.export(model, (dummy,), str(path), input_names=["images"], output_names=["output0"],
                          dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}}, opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)
    _fix_output_shape(path, 4 + nc, anchors)
    (out_dir / "labels.txt").write_text("".join(f"class{i}\n" for i in range(nc)))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): YOLOv8n-shaped, {params / 1e6:.3f}M parameters "
          f"(before Conv+BN fusion), input [B, 3, {input_size}, {input_size}], output [B, {4 + nc}, {anchors}]; "
          f"random weights: for speed measurements only")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".cache/bench-model"))
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--input-size", type=int, default=640)
    args = parser.parse_args()
    export(args.out, args.classes, args.input_size)


if __name__ == "__main__":
    main()
