"""The demo detector: a small anchor-free (FCOS/YOLOv8-style) CNN whose output is laid out like YOLOv8.

Output [B, 4 + C, N]: rows 0..3 are cx, cy, w, h in model-input pixels, rows 4.. are per-class
sigmoid scores; N = (S/8)^2 + (S/16)^2 + (S/32)^2 points, stride-8 points first.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

STRIDES = (8, 16, 32)


def conv_bn_act(c_in: int, c_out: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.SiLU())


class ResidualBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.a = conv_bn_act(c, c, k=1)
        self.b = conv_bn_act(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))


class DemoDetector(nn.Module):
    def __init__(self, num_classes: int, widths: tuple[int, ...] = (16, 32, 64, 96, 128), neck: int = 48):
        super().__init__()
        w = widths
        self.num_classes = num_classes
        self.stem = nn.Sequential(conv_bn_act(3, w[0], 2), conv_bn_act(w[0], w[1], 2), conv_bn_act(w[1], w[1]))
        self.stage3 = nn.Sequential(conv_bn_act(w[1], w[2], 2), ResidualBlock(w[2]), conv_bn_act(w[2], w[2]))
        self.stage4 = nn.Sequential(conv_bn_act(w[2], w[3], 2), ResidualBlock(w[3]), conv_bn_act(w[3], w[3]))
        self.stage5 = nn.Sequential(conv_bn_act(w[3], w[4], 2), ResidualBlock(w[4]), conv_bn_act(w[4], w[4]))
        self.lateral = nn.ModuleList([nn.Conv2d(c, neck, 1) for c in (w[2], w[3], w[4])])
        self.heads = nn.ModuleList([nn.Sequential(conv_bn_act(neck, neck), conv_bn_act(neck, neck)) for _ in STRIDES])
        self.box_out = nn.ModuleList([nn.Conv2d(neck, 4, 1) for _ in STRIDES])
        self.cls_out = nn.ModuleList([nn.Conv2d(neck, num_classes, 1) for _ in STRIDES])
        for conv in self.cls_out:
            nn.init.constant_(conv.bias, -4.6)  # prior 1 % foreground: stable focal-loss start
        for conv in self.box_out:
            nn.init.constant_(conv.bias, 1.0)

    def raw(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """-> per level (ltrb distances in stride units, >0) [B,4,H,W] and class logits [B,C,H,W]."""
        c3 = self.stage3(self.stem(x))
        c4 = self.stage4(c3)
        c5 = self.stage5(c4)
        p5 = self.lateral[2](c5)
        p4 = self.lateral[1](c4) + F.interpolate(p5, scale_factor=2.0, mode="nearest")
        p3 = self.lateral[0](c3) + F.interpolate(p4, scale_factor=2.0, mode="nearest")
        dist, logits = [], []
        for i, p in enumerate((p3, p4, p5)):
            h = self.heads[i](p)
            dist.append(F.softplus(self.box_out[i](h)))
            logits.append(self.cls_out[i](h))
        return dist, logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dist, logits = self.raw(x)
        return decode_levels(dist, logits)


def level_points(dist: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres of every output cell in model pixels [N,2] and their strides [N] (level order)."""
    pts, strides = [], []
    for d, s in zip(dist, STRIDES):
        h, w = d.shape[-2:]
        ys = (torch.arange(h, dtype=torch.float32, device=d.device) + 0.5) * s
        xs = (torch.arange(w, dtype=torch.float32, device=d.device) + 0.5) * s
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        pts.append(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1))
        strides.append(torch.full((h * w,), float(s), device=d.device))
    return torch.cat(pts), torch.cat(strides)


def decode_levels(dist: list[torch.Tensor], logits: list[torch.Tensor]) -> torch.Tensor:
    """ltrb distances + logits -> [B, 4+C, N] (cx, cy, w, h, sigmoid scores)."""
    b = dist[0].shape[0]
    pts, strides = level_points(dist)
    d = torch.cat([x.reshape(b, 4, -1) for x in dist], 2) * strides
    cls = torch.cat([x.reshape(b, x.shape[1], -1) for x in logits], 2)
    px, py = pts[:, 0], pts[:, 1]
    l, t, r, bt = d[:, 0], d[:, 1], d[:, 2], d[:, 3]
    cx = px + (r - l) * 0.5
    cy = py + (bt - t) * 0.5
    box = torch.stack([cx, cy, l + r, t + bt], 1)
    return torch.cat([box, torch.sigmoid(cls)], 1)
