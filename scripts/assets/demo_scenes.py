"""Procedural street scenes with exact ground truth, shared by the demo-asset maker and the trainer.

A clip is planned once from a seed (background, object tracks, camera effects); frame k is then a
pure function of (plan, k), so the trainer can render any single frame and the demo clips are
reproducible bit for bit before encoding.

Ground-truth rule (the same for training and the demo clips):
- every object is drawn into its own patch at 2x and downsampled, so its coverage (alpha) is known;
- its box is the extent of the pixels it covers by at least 50 %, in source pixels, [x1, y1, x2, y2)
  with x2/y2 exclusive, clipped to the frame;
- it is labelled only when at least half of those pixels lie inside the frame;
- boxes are amodal under occlusion (a person half behind a car keeps its full box); tracks are planned
  so that no object hides more than ~20 % of another's nominal box (moderate occlusion only), and
  objects that stand still never overlap each other.
Bicycles are riderless so that the bicycle class never contains a person-like shape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("person", "car", "bicycle")
VTEST_PATH = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
REFERENCE_HEIGHT = 720  # object sizes below are pixels of a 720-line frame, scaled to the clip
MIN_INSIDE_FRACTION = 0.5
MAX_NOMINAL_OVERLAP = 0.2
SUPERSAMPLE = 2
SHIFT = 4  # OpenCV fixed-point bits for sub-pixel drawing

# size ranges at REFERENCE_HEIGHT: person height, car length (side) / width (front), bicycle length
SIZE_RANGE = {"person": (170.0, 330.0), "car_side": (250.0, 520.0), "car_front": (150.0, 300.0),
              "bicycle": (170.0, 300.0)}
# nominal box (width, height) per unit size, used only for planning overlaps
NOMINAL_BOX = {"person_side": (0.45, 1.0), "person_front": (0.36, 1.0), "car_side": (1.0, 0.56),
               "car_front": (1.0, 0.82), "bicycle": (1.0, 0.64)}


# ----------------------------------------------------------------------------------------------
# backgrounds


def load_vtest_backdrop(path: Path = VTEST_PATH, step: int = 4) -> np.ndarray:
    """Temporal median of vtest.avi: the real street with its walking people removed.

    The two vehicles parked at the top right are inpainted away so that no unlabelled car
    remains in the backdrop. Returns HxWx3 uint8 RGB (768x576)."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % step == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
    median = np.median(np.stack(frames), axis=0).astype(np.uint8)
    mask = np.zeros(median.shape[:2], np.uint8)
    mask[38:106, 644:768] = 255
    return cv2.inpaint(median, mask, 9, cv2.INPAINT_TELEA)


def _smooth_noise(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """Low-frequency noise in -1..1 (HxW float32)."""
    cw = max(2, cells)
    ch = max(2, int(round(cells * height / width)))
    small = rng.uniform(-1, 1, (ch, cw)).astype(np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _jitter_colours(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-8, 8)) % 180
    hsv[..., 1] *= rng.uniform(0.6, 1.3)
    hsv[..., 2] *= rng.uniform(0.7, 1.25)
    return cv2.cvtColor(hsv.clip(0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)


def _vtest_background(rng: np.random.Generator, backdrop: np.ndarray, width: int, height: int) -> np.ndarray:
    bh, bw = backdrop.shape[:2]
    aspect = width / height
    frac = rng.uniform(0.55, 1.0)
    cw = min(bw, int(bw * frac))
    ch = int(cw / aspect)
    if ch > bh:
        ch = int(bh * frac)
        cw = min(bw, int(ch * aspect))
    x0 = int(rng.integers(0, bw - cw + 1))
    y0 = int(rng.integers(0, bh - ch + 1))
    crop = backdrop[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    out = cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.8, 2.5))
    return _jitter_colours(rng, out)


def _procedural_background(rng: np.random.Generator, width: int, height: int, horizon: float) -> np.ndarray:
    """Facade or sky above the horizon; asphalt, pavement and grass below, with texture noise."""
    img = np.zeros((height, width, 3), np.float32)
    hy = int(horizon)
    if rng.random() < 0.6:  # building facade with a window grid
        wall = rng.uniform(60, 200, 3)
        img[:hy] = wall
        win = rng.uniform(20, 120, 3)
        cell_w = rng.uniform(0.05, 0.12) * width
        cell_h = rng.uniform(0.06, 0.14) * height
        x = rng.uniform(0, cell_w)
        while x < width:
            y = rng.uniform(0, cell_h * 0.5)
            while y + cell_h * 0.6 < hy:
                cv2.rectangle(img, (int(x), int(y)), (int(x + cell_w * 0.55), int(y + cell_h * 0.6)),
                              tuple(float(c) for c in win + rng.uniform(-15, 15, 3)), -1)
                y += cell_h
            x += cell_w
        if rng.random() < 0.5:  # brick courses
            for y in range(0, hy, max(3, int(height * 0.012))):
                cv2.line(img, (0, y), (width, y), tuple(float(c) for c in wall * 0.8), 1)
    else:  # sky gradient with distant blocks
        top, bottom = rng.uniform(120, 240, 3), rng.uniform(160, 250, 3)
        ramp = np.linspace(0, 1, max(hy, 1), dtype=np.float32)[:, None, None]
        img[:hy] = top * (1 - ramp) + bottom * ramp
        for _ in range(int(rng.integers(2, 8))):
            bx = rng.uniform(0, width)
            bw = rng.uniform(0.05, 0.25) * width
            bh = rng.uniform(0.2, 0.9) * hy
            cv2.rectangle(img, (int(bx), int(hy - bh)), (int(bx + bw), hy), tuple(rng.uniform(50, 170, 3).tolist()), -1)
    # ground: horizontal bands of road / pavement / grass
    y = hy
    while y < height:
        band = int(rng.uniform(0.08, 0.35) * height)
        kind = rng.choice(["asphalt", "pavement", "grass"], p=[0.45, 0.3, 0.25])
        if kind == "asphalt":
            colour = np.full(3, rng.uniform(60, 130)) + rng.uniform(-8, 8, 3)
        elif kind == "pavement":
            colour = np.full(3, rng.uniform(130, 200)) + rng.uniform(-12, 12, 3)
        else:
            colour = np.array([rng.uniform(40, 90), rng.uniform(90, 160), rng.uniform(30, 70)])
        img[y:y + band] = colour
        if kind == "asphalt" and rng.random() < 0.7:  # dashed lane marking
            ly = y + band // 2
            dash = rng.uniform(0.03, 0.08) * width
            x = rng.uniform(0, dash)
            lane = (230, 230, 230) if rng.random() < 0.6 else (220, 190, 40)
            while x < width:
                cv2.rectangle(img, (int(x), ly), (int(x + dash), ly + max(2, band // 25)), lane, -1)
                x += dash * 2
        if kind == "pavement" and rng.random() < 0.7:  # tile joints
            step = max(8, int(rng.uniform(0.03, 0.07) * width))
            for x in range(int(rng.uniform(0, step)), width, step):
                cv2.line(img, (x, y), (x, y + band), tuple((colour * 0.8).tolist()), 1)
        y += band
    texture = _smooth_noise(rng, width, height, int(rng.integers(8, 40))) * rng.uniform(5, 25)
    texture += _smooth_noise(rng, width, height, int(rng.integers(60, 160))) * rng.uniform(3, 12)
    img += texture[..., None]
    return img.clip(0, 255).astype(np.uint8)


def _draw_distractor(rng: np.random.Generator, img: np.ndarray, x: float, y: float, size: float) -> None:
    """Unlabelled street furniture (cones, bins, poles, benches, trees, boxes, puddles)."""
    kind = rng.choice(["cone", "bin", "pole", "bench", "tree", "box", "puddle", "fence", "ball"])
    col = tuple(rng.uniform(20, 235, 3).tolist())
    s = size
    xi, yi = int(x), int(y)
    if kind == "cone":
        pts = np.array([[x - 0.12 * s, y], [x + 0.12 * s, y], [x, y - 0.35 * s]], np.int32)
        cv2.fillPoly(img, [pts], (235, 110, 20), cv2.LINE_AA)
        cv2.line(img, (int(x - 0.06 * s), int(y - 0.17 * s)), (int(x + 0.06 * s), int(y - 0.17 * s)), (240, 240, 240), max(1, int(0.04 * s)))
    elif kind == "bin":
        cv2.rectangle(img, (int(x - 0.12 * s), int(y - 0.4 * s)), (int(x + 0.12 * s), yi), col, -1)
        cv2.rectangle(img, (int(x - 0.14 * s), int(y - 0.44 * s)), (int(x + 0.14 * s), int(y - 0.38 * s)), tuple(c * 0.7 for c in col), -1)
    elif kind == "pole":
        cv2.line(img, (xi, yi), (xi, int(y - 1.3 * s)), (110, 110, 115), max(2, int(0.03 * s)))
        if rng.random() < 0.6:
            cv2.circle(img, (xi, int(y - 1.3 * s)), max(3, int(0.1 * s)), col, -1, cv2.LINE_AA)
    elif kind == "bench":
        for k in range(3):
            yy = int(y - (0.2 + 0.07 * k) * s)
            cv2.rectangle(img, (int(x - 0.4 * s), yy), (int(x + 0.4 * s), yy + max(1, int(0.04 * s))), col, -1)
        for dx in (-0.35, 0.35):
            cv2.line(img, (int(x + dx * s), int(y - 0.2 * s)), (int(x + dx * s), yi), (50, 50, 50), max(1, int(0.03 * s)))
    elif kind == "tree":
        s *= 1.6
        cv2.rectangle(img, (int(x - 0.05 * s), int(y - 0.7 * s)), (int(x + 0.05 * s), yi), (90, 60, 35), -1)
        green = (rng.uniform(20, 70), rng.uniform(80, 150), rng.uniform(20, 60))
        for _ in range(8):
            cv2.circle(img, (int(x + rng.uniform(-0.4, 0.4) * s), int(y - rng.uniform(0.75, 1.15) * s)),
                       max(3, int(rng.uniform(0.22, 0.35) * s)), green, -1, cv2.LINE_AA)
    elif kind == "box":
        cv2.rectangle(img, (int(x - 0.2 * s), int(y - 0.3 * s)), (int(x + 0.2 * s), yi), (150, 110, 60), -1)
        cv2.line(img, (int(x - 0.2 * s), int(y - 0.15 * s)), (int(x + 0.2 * s), int(y - 0.15 * s)), (110, 80, 40), max(1, int(0.02 * s)))
    elif kind == "puddle":
        cv2.ellipse(img, (xi, yi), (max(3, int(0.4 * s)), max(2, int(0.08 * s))), 0, 0, 360, tuple(c * 0.5 for c in col), -1, cv2.LINE_AA)
    elif kind == "fence":
        for k in range(8):
            xx = int(x - 0.6 * s + k * 0.17 * s)
            cv2.line(img, (xx, yi), (xx, int(y - 0.5 * s)), col, max(1, int(0.025 * s)))
        cv2.line(img, (int(x - 0.6 * s), int(y - 0.45 * s)), (int(x + 0.6 * s), int(y - 0.45 * s)), col, max(1, int(0.025 * s)))
    else:
        cv2.circle(img, (xi, int(y - 0.1 * s)), max(3, int(0.1 * s)), col, -1, cv2.LINE_AA)


# ----------------------------------------------------------------------------------------------
# sprites: each object is drawn around its ground-contact point (0, 0), y pointing down


class SpriteCanvas:
    """An object's own colour patch plus coverage mask, drawn at SUPERSAMPLE x resolution."""

    def __init__(self, width: int, height: int, origin_x: float, origin_y: float):
        self.rgb = np.zeros((height * SUPERSAMPLE, width * SUPERSAMPLE, 3), np.uint8)
        self.mask = np.zeros((height * SUPERSAMPLE, width * SUPERSAMPLE), np.uint8)
        self.ox = origin_x
        self.oy = origin_y

    def _fixed(self, pts) -> np.ndarray:
        arr = np.asarray(pts, np.float64).reshape(-1, 2)
        arr = (arr + (self.ox, self.oy)) * SUPERSAMPLE * (1 << SHIFT)
        return np.round(arr).astype(np.int32)

    def poly(self, pts, colour) -> None:
        p = [self._fixed(pts)]
        cv2.fillPoly(self.rgb, p, colour, cv2.LINE_8, SHIFT)
        cv2.fillPoly(self.mask, p, 255, cv2.LINE_8, SHIFT)

    def line(self, a, b, colour, thickness: float) -> None:
        p, q = self._fixed([a, b])
        t = max(1, int(round(thickness * SUPERSAMPLE)))
        cv2.line(self.rgb, tuple(p), tuple(q), colour, t, cv2.LINE_8, SHIFT)
        cv2.line(self.mask, tuple(p), tuple(q), 255, t, cv2.LINE_8, SHIFT)

    def circle(self, c, r: float, colour, thickness: float = -1) -> None:
        (p,) = self._fixed([c])
        rr = int(round(r * SUPERSAMPLE * (1 << SHIFT)))
        t = -1 if thickness < 0 else max(1, int(round(thickness * SUPERSAMPLE)))
        cv2.circle(self.rgb, tuple(p), rr, colour, t, cv2.LINE_8, SHIFT)
        cv2.circle(self.mask, tuple(p), rr, 255, t, cv2.LINE_8, SHIFT)

    def ellipse(self, c, axes, angle: float, colour) -> None:
        (p,) = self._fixed([c])
        ax = (max(1, int(round(axes[0] * SUPERSAMPLE * (1 << SHIFT)))), max(1, int(round(axes[1] * SUPERSAMPLE * (1 << SHIFT)))))
        cv2.ellipse(self.rgb, tuple(p), ax, angle, 0, 360, colour, -1, cv2.LINE_8, SHIFT)
        cv2.ellipse(self.mask, tuple(p), ax, angle, 0, 360, 255, -1, cv2.LINE_8, SHIFT)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """-> (premultiplied colour float32 HxWx3, alpha float32 HxW in 0..1) at output resolution."""
        h, w = self.mask.shape
        size = (w // SUPERSAMPLE, h // SUPERSAMPLE)
        rgb = cv2.resize(self.rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        alpha = cv2.resize(self.mask, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        return rgb, alpha


def _shade(colour, factor: float) -> tuple[float, float, float]:
    return tuple(float(min(255.0, c * factor)) for c in colour)


def draw_person(cv: SpriteCanvas, h: float, facing: int, phase: float, walking: bool, look: dict) -> None:
    """Head, torso, arms and legs; side view (facing +-1) scissors the legs, front view (0) does not."""
    r = 0.068 * h
    skin, shirt, pants, shoes, hair = look["skin"], look["shirt"], look["pants"], look["shoes"], look["hair"]
    swing = 0.42 * math.sin(phase) if walking else 0.12  # standing: feet and arms slightly apart
    hip_y, shoulder_y, leg = -0.49 * h, -0.82 * h, 0.49 * h
    f = facing if facing else 1
    if facing:
        for sgn, tone in ((-1, 0.75), (1, 1.0)):  # far leg first
            ang = sgn * swing
            foot = (leg * math.sin(ang), hip_y + leg * math.cos(ang))
            cv.line((0, hip_y), foot, _shade(pants, tone), 0.085 * h)
            cv.ellipse((foot[0] + f * 0.025 * h, foot[1] - 0.012 * h), (0.045 * h, 0.02 * h), 0, _shade(shoes, tone))
        arm_back = (-f * 0.0, shoulder_y + 0.02 * h)
        a = -swing * 0.8
        hand = (arm_back[0] + 0.36 * h * math.sin(a), arm_back[1] + 0.36 * h * math.cos(a))
        cv.line(arm_back, hand, _shade(shirt, 0.75), 0.06 * h)
        torso = [(-0.1 * h, shoulder_y), (0.09 * h, shoulder_y), (0.1 * h, hip_y + 0.02 * h), (-0.1 * h, hip_y + 0.02 * h)]
        if look["coat"]:
            torso[2] = (0.12 * h, hip_y + 0.2 * h)
            torso[3] = (-0.12 * h, hip_y + 0.2 * h)
        cv.poly([(f * x, y) for x, y in torso], shirt)
        if look["bag"]:
            cv.poly([(-f * 0.13 * h, shoulder_y + 0.06 * h), (-f * 0.03 * h, shoulder_y + 0.06 * h),
                     (-f * 0.03 * h, shoulder_y + 0.25 * h), (-f * 0.13 * h, shoulder_y + 0.25 * h)], look["bag_colour"])
        hand2 = (0.36 * h * math.sin(-a), shoulder_y + 0.02 * h + 0.36 * h * math.cos(-a))
        cv.line((0, shoulder_y + 0.02 * h), hand2, shirt, 0.06 * h)
        cv.circle(hand2, 0.032 * h, skin)
        cv.line((0, shoulder_y + 0.01 * h), (f * 0.01 * h, shoulder_y - 0.04 * h), skin, 0.05 * h)
        head = (f * 0.012 * h, -h + r)
        cv.circle(head, r, skin)
        cv.ellipse((head[0] - f * 0.012 * h, head[1] - 0.3 * r), (r * 1.02, r * 0.75), 0, hair)
    else:
        lift = 0.03 * h * math.sin(phase) if walking else 0.0
        for sgn, dy in ((-1, max(0.0, lift)), (1, max(0.0, -lift))):
            foot = (sgn * 0.065 * h, -dy)
            cv.line((sgn * 0.055 * h, hip_y), foot, pants, 0.09 * h)
            cv.ellipse((foot[0], foot[1] - 0.015 * h), (0.04 * h, 0.022 * h), 0, shoes)
        bottom = hip_y + (0.2 * h if look["coat"] else 0.03 * h)
        width = 0.15 * h if look["coat"] else 0.13 * h
        cv.poly([(-0.14 * h, shoulder_y), (0.14 * h, shoulder_y), (width, bottom), (-width, bottom)], shirt)
        for sgn in (-1, 1):
            sway = 0.04 * h * math.sin(phase + (0 if sgn > 0 else math.pi)) if walking else 0.0
            hand = (sgn * 0.18 * h, shoulder_y + 0.36 * h + sway * 0.2)
            cv.line((sgn * 0.15 * h, shoulder_y + 0.02 * h), hand, shirt, 0.06 * h)
            cv.circle(hand, 0.032 * h, skin)
        cv.line((0, shoulder_y + 0.01 * h), (0, shoulder_y - 0.04 * h), skin, 0.055 * h)
        cv.circle((0, -h + r), r, skin)
        cv.ellipse((0, -h + r - 0.35 * r), (r * 1.05, r * 0.72), 0, hair)
        if look["bag"]:
            cv.line((-0.12 * h, shoulder_y), (0.1 * h, hip_y), look["bag_colour"], 0.02 * h)


def draw_car_side(cv: SpriteCanvas, length: float, facing: int, phase: float, look: dict) -> None:
    L = length
    body, glass = look["body"], look["glass"]
    rw = 0.105 * L
    if look["style"] == "van":
        shape = [(-0.5, -0.12), (0.5, -0.12), (0.5, -0.3), (0.44, -0.36), (0.3, -0.38), (0.2, -0.6), (-0.5, -0.6)]
        windows = [[(0.27, -0.39), (0.19, -0.56), (0.06, -0.56), (0.06, -0.39)], [(0.02, -0.39), (0.02, -0.56), (-0.25, -0.56), (-0.25, -0.39)]]
    elif look["style"] == "hatch":
        shape = [(-0.5, -0.12), (0.5, -0.12), (0.5, -0.28), (0.44, -0.34), (0.18, -0.37), (0.04, -0.54), (-0.4, -0.54), (-0.5, -0.4)]
        windows = [[(0.15, -0.38), (0.03, -0.51), (-0.12, -0.51), (-0.12, -0.38)], [(-0.16, -0.38), (-0.16, -0.51), (-0.38, -0.51), (-0.45, -0.4)]]
    else:  # sedan
        shape = [(-0.5, -0.12), (0.5, -0.12), (0.5, -0.27), (0.46, -0.33), (0.2, -0.35), (0.08, -0.52), (-0.26, -0.52), (-0.4, -0.36), (-0.5, -0.34)]
        windows = [[(0.17, -0.36), (0.06, -0.49), (-0.07, -0.49), (-0.07, -0.36)], [(-0.11, -0.36), (-0.11, -0.49), (-0.24, -0.49), (-0.35, -0.36)]]
    f = facing
    for wx in (-0.31, 0.31):
        cv.circle((f * wx * L, -rw), rw * 1.18, _shade(body, 0.35))
    cv.poly([(f * x * L, y * L) for x, y in shape], body)
    for win in windows:
        cv.poly([(f * x * L, y * L) for x, y in win], glass)
    cv.line((f * -0.09 * L, -0.14 * L), (f * -0.09 * L, -0.35 * L), _shade(body, 0.6), max(1.0, 0.006 * L))
    cv.line((f * -0.5 * L, -0.2 * L), (f * 0.5 * L, -0.2 * L), _shade(body, 0.75), max(1.0, 0.006 * L))
    cv.poly([(f * 0.5 * L, -0.25 * L), (f * 0.47 * L, -0.25 * L), (f * 0.47 * L, -0.29 * L), (f * 0.5 * L, -0.28 * L)], (250, 240, 190))
    cv.poly([(f * -0.5 * L, -0.26 * L), (f * -0.48 * L, -0.26 * L), (f * -0.48 * L, -0.31 * L), (f * -0.5 * L, -0.31 * L)], (200, 20, 20))
    for wx in (-0.31, 0.31):
        c = (f * wx * L, -rw)
        cv.circle(c, rw, (22, 22, 24))
        cv.circle(c, rw * 0.55, look["rim"])
        for k in range(5):
            ang = phase + k * 2 * math.pi / 5
            cv.line(c, (c[0] + 0.5 * rw * math.cos(ang), c[1] + 0.5 * rw * math.sin(ang)), _shade(look["rim"], 0.6), max(1.0, 0.08 * rw))
        cv.circle(c, rw * 0.15, (40, 40, 40))


def draw_car_front(cv: SpriteCanvas, width: float, rear: bool, look: dict) -> None:
    W = width
    body, glass = look["body"], look["glass"]
    for sgn in (-1, 1):
        cv.poly([(sgn * 0.44 * W, 0), (sgn * 0.3 * W, 0), (sgn * 0.3 * W, -0.18 * W), (sgn * 0.44 * W, -0.18 * W)], (20, 20, 22))
    cv.poly([(-0.5 * W, -0.1 * W), (0.5 * W, -0.1 * W), (0.5 * W, -0.45 * W), (0.42 * W, -0.52 * W), (-0.42 * W, -0.52 * W), (-0.5 * W, -0.45 * W)], body)
    cv.poly([(-0.41 * W, -0.52 * W), (0.41 * W, -0.52 * W), (0.33 * W, -0.8 * W), (-0.33 * W, -0.8 * W)], body)
    cv.poly([(-0.36 * W, -0.54 * W), (0.36 * W, -0.54 * W), (0.3 * W, -0.76 * W), (-0.3 * W, -0.76 * W)], glass)
    for sgn in (-1, 1):
        cv.poly([(sgn * 0.42 * W, -0.55 * W), (sgn * 0.52 * W, -0.55 * W), (sgn * 0.52 * W, -0.61 * W), (sgn * 0.42 * W, -0.61 * W)], body)
    cv.poly([(-0.5 * W, -0.1 * W), (0.5 * W, -0.1 * W), (0.5 * W, -0.18 * W), (-0.5 * W, -0.18 * W)], _shade(body, 0.45))
    cv.poly([(-0.12 * W, -0.2 * W), (0.12 * W, -0.2 * W), (0.12 * W, -0.27 * W), (-0.12 * W, -0.27 * W)], (235, 235, 225) if not look["yellow_plate"] else (235, 200, 40))
    if rear:
        for sgn in (-1, 1):
            cv.poly([(sgn * 0.46 * W, -0.36 * W), (sgn * 0.3 * W, -0.36 * W), (sgn * 0.3 * W, -0.45 * W), (sgn * 0.46 * W, -0.45 * W)], (190, 20, 20))
    else:
        cv.poly([(-0.22 * W, -0.3 * W), (0.22 * W, -0.3 * W), (0.22 * W, -0.42 * W), (-0.22 * W, -0.42 * W)], (30, 30, 32))
        for sgn in (-1, 1):
            cv.ellipse((sgn * 0.36 * W, -0.38 * W), (0.08 * W, 0.045 * W), 0, (250, 245, 200))


def draw_bicycle(cv: SpriteCanvas, length: float, facing: int, phase: float, look: dict) -> None:
    L = length
    R = 0.19 * L
    f = facing
    rear, front = (f * (-0.5 * L + R), -R), (f * (0.5 * L - R), -R)
    bb = (f * -0.04 * L, -0.9 * R)
    seat = (f * -0.14 * L, -0.56 * L)
    head_top, head_bot = (f * 0.2 * L, -0.53 * L), (f * 0.23 * L, -0.43 * L)
    tyre = max(2.0, 0.04 * L)
    tube = max(1.6, 0.03 * L)
    for c in (rear, front):
        cv.circle(c, R - tyre / 2, look["tyre"], tyre)
        for k in range(6):
            ang = phase + k * math.pi / 6
            d = (R - tyre) * 0.98
            cv.line((c[0] - d * math.cos(ang), c[1] - d * math.sin(ang)), (c[0] + d * math.cos(ang), c[1] + d * math.sin(ang)), (150, 150, 155), max(1.0, 0.006 * L))
        cv.circle(c, max(1.5, 0.025 * L), (60, 60, 60))
    frame = look["frame"]
    for a, b in ((rear, bb), (rear, seat), (bb, seat), (bb, head_bot), (seat, head_top), (head_bot, front), (head_top, head_bot)):
        cv.line(a, b, frame, tube)
    cv.line(seat, (seat[0] - f * 0.01 * L, seat[1] - 0.05 * L), (60, 60, 60), tube * 0.8)
    cv.ellipse((seat[0] - f * 0.015 * L, seat[1] - 0.06 * L), (0.07 * L, 0.018 * L), 0, (25, 25, 25))
    bar = (head_top[0] - f * 0.02 * L, -0.62 * L)
    cv.line(head_top, bar, (70, 70, 70), tube * 0.8)
    cv.line(bar, (bar[0] - f * 0.07 * L, bar[1] + 0.01 * L), (30, 30, 30), tube * 1.1)
    crank = 0.06 * L
    pedal = (bb[0] + crank * math.cos(phase * 0.6), bb[1] + crank * math.sin(phase * 0.6))
    cv.line(bb, pedal, (80, 80, 80), tube * 0.7)
    cv.circle(bb, max(1.5, 0.035 * L), (90, 90, 90))


# ----------------------------------------------------------------------------------------------
# planning


@dataclass(frozen=True)
class Track:
    """One object's trajectory: ground-contact point moves linearly in time; size follows depth."""

    label: str
    view: str  # person_side, person_front, car_side, car_front, car_rear, bicycle
    x0: float  # ground-contact x at frame 0 (source px)
    y0: float  # ground-contact y at frame 0
    vx: float  # px per frame
    vy: float
    size0: float  # size at y0 (px)
    size_per_y: float  # d size / d y (perspective)
    facing: int
    phase0: float
    phase_rate: float  # radians per frame (gait / wheel rotation)
    look: dict
    min_size: float  # the object exists only while its size is within [min_size, max_size]
    max_size: float

    def at(self, k: int) -> tuple[float, float, float, float]:
        """-> (x, y, size, phase) at frame k."""
        y = self.y0 + self.vy * k
        return self.x0 + self.vx * k, y, max(4.0, self.size0 + self.size_per_y * (y - self.y0)), self.phase0 + self.phase_rate * k

    def nominal_box(self, k: int) -> tuple[float, float, float, float]:
        x, y, s, _ = self.at(k)
        key = "car_front" if self.view == "car_rear" else self.view
        w, h = NOMINAL_BOX[key]
        return x - w * s / 2, y - h * s, x + w * s / 2, y


@dataclass(frozen=True)
class CameraLook:
    noise_sigma: float
    exposure: float  # fraction of the frame interval the shutter is open (motion blur)
    defocus_sigma: float
    lut: np.ndarray  # 3x256 uint8 per-channel tone curve (gain, contrast, gamma)
    flicker: float


@dataclass(frozen=True, eq=False)
class ClipPlan:
    seed: int
    width: int
    height: int
    fps: float
    n_frames: int
    background: np.ndarray  # HxWx3 uint8 with static distractors drawn in
    occluders: tuple[tuple[np.ndarray, np.ndarray, int, int], ...]  # (premult rgb, alpha, x, y) drawn over objects
    tracks: tuple[Track, ...]
    camera: CameraLook


def _random_look(rng: np.random.Generator, label: str) -> dict:
    def colour(lo=20, hi=235):
        return tuple(rng.uniform(lo, hi, 3).tolist())

    if label == "person":
        skin = tuple((np.array([rng.uniform(90, 235)] * 3) * np.array([1.0, 0.78, 0.62])).tolist())
        return {"skin": skin, "shirt": colour(), "pants": colour(15, 160), "shoes": colour(10, 90), "hair": colour(10, 120),
                "coat": bool(rng.random() < 0.25), "bag": bool(rng.random() < 0.25), "bag_colour": colour(10, 140)}
    if label == "car":
        if rng.random() < 0.35:
            g = rng.uniform(25, 235)
            body = (g, g, g * rng.uniform(0.95, 1.05))
        else:
            body = colour(30, 230)
        return {"body": body, "glass": tuple(rng.uniform(25, 90, 3).tolist()), "rim": colour(120, 210),
                "style": str(rng.choice(["sedan", "hatch", "van"], p=[0.5, 0.3, 0.2])), "yellow_plate": bool(rng.random() < 0.3)}
    return {"frame": colour(20, 240), "tyre": colour(10, 50)}


def _camera_look(rng: np.random.Generator) -> CameraLook:
    x = np.arange(256, dtype=np.float32) / 255.0
    gamma = rng.uniform(0.8, 1.25)
    contrast = rng.uniform(0.8, 1.15)
    lut = []
    for _ in range(3):
        gain = rng.uniform(0.9, 1.1)
        y = ((x ** gamma - 0.5) * contrast + 0.5 + rng.uniform(-0.06, 0.06)) * gain
        lut.append((y * 255).clip(0, 255).astype(np.uint8))
    return CameraLook(noise_sigma=float(rng.uniform(0.5, 3.5)), exposure=float(rng.uniform(0.2, 0.9)),
                      defocus_sigma=float(0.0 if rng.random() < 0.6 else rng.uniform(0.5, 1.2)),
                      lut=np.stack(lut), flicker=float(rng.uniform(0, 0.03)))


def _overlaps_too_much(a: Track, b: Track, frames: np.ndarray, width: int, height: int) -> bool:
    for k in frames:
        ba, bb = a.nominal_box(int(k)), b.nominal_box(int(k))
        if ba[2] < 0 or ba[0] > width or bb[2] < 0 or bb[0] > width:
            continue
        iw = min(ba[2], bb[2]) - max(ba[0], bb[0])
        ih = min(ba[3], bb[3]) - max(ba[1], bb[1])
        if iw <= 0 or ih <= 0:
            continue
        smaller = min((ba[2] - ba[0]) * (ba[3] - ba[1]), (bb[2] - bb[0]) * (bb[3] - bb[1]))
        both_still = a.vx == a.vy == 0 and b.vx == b.vy == 0
        if iw * ih > (0.0 if both_still else MAX_NOMINAL_OVERLAP) * smaller:
            return True
    return False


def _plan_track(rng: np.random.Generator, width: int, height: int, fps: float, n_frames: int, horizon: float) -> Track:
    unit = height / REFERENCE_HEIGHT
    label = str(rng.choice(CLASSES, p=[0.45, 0.3, 0.25]))
    y_lo, y_hi = horizon + 0.25 * (height - horizon), height * 1.0
    if label == "person":
        view = "person_side" if rng.random() < 0.7 else "person_front"
        lo, hi = SIZE_RANGE["person"]
    elif label == "car":
        view = str(rng.choice(["car_side", "car_front", "car_rear"], p=[0.6, 0.2, 0.2]))
        lo, hi = SIZE_RANGE["car_side" if view == "car_side" else "car_front"]
    else:
        view = "bicycle"
        lo, hi = SIZE_RANGE["bicycle"]
    lo, hi = lo * unit, hi * unit
    y = rng.uniform(y_lo, y_hi)
    depth = (y - y_lo) / (y_hi - y_lo)
    size = lo + (hi - lo) * depth * rng.uniform(0.85, 1.15)
    size = float(np.clip(size, lo, hi))
    # perspective: size grows linearly with y (zero size at the horizon), capped by the range
    size_per_y = size / max(1.0, y - horizon)
    moving = rng.random() < 0.88
    facing = 1 if rng.random() < 0.5 else -1
    vx = vy = 0.0
    if moving:
        if view in ("person_side", "car_side", "bicycle"):
            speed = size * {"person_side": rng.uniform(0.4, 0.9), "car_side": rng.uniform(0.5, 1.6), "bicycle": rng.uniform(0.6, 1.5)}[view]
            vx = facing * speed / fps
            vy = rng.uniform(-0.03, 0.03) * speed / fps
        else:  # walking or driving towards / away from the camera: size changes with depth
            vy = (1 if view in ("person_front", "car_front") else -1) * rng.uniform(0.04, 0.12) * height / fps
            if view == "person_front" and rng.random() < 0.5:
                vy = -vy
            vx = rng.uniform(-0.05, 0.05) * size / fps
    # start somewhere along the path so that the object is on screen for part of the clip
    k_mid = rng.uniform(-0.2, 1.2) * n_frames
    x_mid = rng.uniform(0.05, 0.95) * width
    x0 = x_mid - vx * k_mid
    y0 = float(np.clip(y - vy * k_mid, horizon + 5, height * 1.6))
    size0 = max(4.0, size + size_per_y * (y0 - y))
    if not moving:
        x0, y0, size0 = x_mid, y, size
    phase_rate = 0.0
    if moving:
        if label == "person":
            phase_rate = 2 * math.pi * rng.uniform(0.8, 1.1) / fps
        else:
            phase_rate = (abs(vx) + abs(vy)) / max(1.0, 0.1 * size)
    return Track(label, view, float(x0), float(y0), float(vx), float(vy), float(size0), float(size_per_y), facing,
                 float(rng.uniform(0, 2 * math.pi)), float(phase_rate), _random_look(rng, label), 0.9 * lo, 1.4 * hi)


def _track_box_inside(track: Track, k: int, width: int, height: int) -> bool:
    x1, y1, x2, y2 = track.nominal_box(k)
    size = track.at(k)[2]
    return x2 > 0 and x1 < width and y2 > 0 and y1 < height and track.min_size <= size <= track.max_size


def plan_clip(seed: int, width: int, height: int, fps: float, n_frames: int, backdrop: np.ndarray,
              n_tracks: int | None = None, background: str | None = None) -> ClipPlan:
    """Everything random about a clip, decided from one seed.

    background: "vtest" (the real street, people removed), "procedural", or None for a coin flip."""
    rng = np.random.default_rng(seed)
    horizon = rng.uniform(0.15, 0.4) * height
    use_vtest = rng.random() < 0.5
    if background is not None:
        use_vtest = background == "vtest"
    if use_vtest:
        backdrop_image = _vtest_background(rng, backdrop, width, height)
    else:
        backdrop_image = _procedural_background(rng, width, height, horizon)
    unit = height / REFERENCE_HEIGHT
    for _ in range(int(rng.integers(0, 7))):
        y = rng.uniform(horizon + 0.1 * (height - horizon), height)
        depth = (y - horizon) / (height - horizon)
        _draw_distractor(rng, backdrop_image, rng.uniform(0, width), y, (80 + 260 * depth) * unit * rng.uniform(0.6, 1.3))
    occluders = []
    if rng.random() < 0.3:  # a lamp post in front of everything
        cv_ = SpriteCanvas(int(0.05 * width) + 4, height, 2, 0)
        x = 0.02 * width
        cv_.line((x, height), (x, rng.uniform(0, 0.3) * height), tuple(rng.uniform(60, 160, 3).tolist()), rng.uniform(0.006, 0.02) * width)
        rgb, a = cv_.finish()
        occluders.append((rgb, a, int(rng.uniform(0, 0.95) * width), 0))
    if rng.random() < 0.2:  # a low bush at the bottom edge
        bw, bh = int(rng.uniform(0.1, 0.25) * width), int(rng.uniform(0.05, 0.1) * height)
        cv_ = SpriteCanvas(bw, bh, 0, 0)
        green = (rng.uniform(20, 60), rng.uniform(70, 140), rng.uniform(20, 50))
        for _ in range(10):
            cv_.circle((rng.uniform(0.1, 0.9) * bw, rng.uniform(0.5, 1.0) * bh), rng.uniform(0.3, 0.5) * bh, _shade(green, rng.uniform(0.8, 1.2)))
        rgb, a = cv_.finish()
        occluders.append((rgb, a, int(rng.uniform(0, 1) * (width - bw)), height - bh))
    if n_tracks is None:
        n_tracks = int(rng.integers(2, 12))
    frames = np.arange(0, n_frames, max(1, n_frames // 60))
    tracks: list[Track] = []
    for _ in range(n_tracks * 30):
        if len(tracks) >= n_tracks:
            break
        cand = _plan_track(rng, width, height, fps, n_frames, horizon)
        if not any(_track_box_inside(cand, int(k), width, height) for k in frames):
            continue
        if any(_overlaps_too_much(cand, t, frames, width, height) for t in tracks):
            continue
        tracks.append(cand)
    return ClipPlan(seed, width, height, fps, n_frames, backdrop_image, tuple(occluders), tuple(tracks), _camera_look(rng))


# ----------------------------------------------------------------------------------------------
# rendering


def _render_sprite(track: Track, k: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """-> (premultiplied rgb, alpha, patch x, patch y) for the track at frame k."""
    x, y, s, phase = track.at(k)
    pad = 4
    w = int(s * 1.15) + 2 * pad
    h = int(s * (1.1 if track.label == "person" else 0.9)) + 2 * pad
    px, py = int(math.floor(x)) - w // 2, int(math.floor(y)) - h + pad
    cv_ = SpriteCanvas(w, h, x - px, y - py)
    if track.view in ("person_side", "person_front"):
        draw_person(cv_, s, track.facing if track.view == "person_side" else 0, phase, track.vx != 0 or track.vy != 0, track.look)
    elif track.view == "car_side":
        draw_car_side(cv_, s, track.facing, phase, track.look)
    elif track.view in ("car_front", "car_rear"):
        draw_car_front(cv_, s, track.view == "car_rear", track.look)
    else:
        draw_bicycle(cv_, s, track.facing, phase, track.look)
    rgb, alpha = cv_.finish()
    return rgb, alpha, px, py


def _motion_kernel(vx: float, vy: float, exposure: float) -> np.ndarray | None:
    length = math.hypot(vx, vy) * exposure
    if length < 1.5:
        return None
    n = int(math.ceil(length)) | 1
    k = np.zeros((n, n), np.float32)
    c = n // 2
    dx, dy = vx / math.hypot(vx, vy), vy / math.hypot(vx, vy)
    cv2.line(k, (int(round(c - dx * length / 2)), int(round(c - dy * length / 2))),
             (int(round(c + dx * length / 2)), int(round(c + dy * length / 2))), 1.0, 1)
    return k / k.sum()


def _composite(frame: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, px: int, py: int) -> None:
    """frame (float32) = frame*(1-a) + premultiplied rgb, for the part of the patch inside the frame."""
    H, W = frame.shape[:2]
    h, w = alpha.shape
    x1, y1, x2, y2 = max(0, px), max(0, py), min(W, px + w), min(H, py + h)
    if x1 >= x2 or y1 >= y2:
        return
    a = alpha[y1 - py:y2 - py, x1 - px:x2 - px, None]
    region = frame[y1:y2, x1:x2]
    region *= 1.0 - a
    region += rgb[y1 - py:y2 - py, x1 - px:x2 - px]


def render_frame(plan: ClipPlan, k: int) -> tuple[np.ndarray, list[dict]]:
    """-> (HxWx3 uint8 RGB frame k, [{"label", "box": [x1, y1, x2, y2], "id"}] by the rule in the module
    doc; "id" is the object's track (its index in plan.tracks): the same object has the same id in every frame)."""
    W, H = plan.width, plan.height
    frame = plan.background.astype(np.float32)
    visible = [t for t in plan.tracks if _track_box_inside(t, k, W, H)]
    visible.sort(key=lambda t: t.at(k)[1])  # far (small y) first
    objects = []
    for t in visible:
        rgb, alpha, px, py = _render_sprite(t, k)
        solid = alpha >= 0.5
        total = int(solid.sum())
        if total == 0:
            continue
        rows, cols = np.nonzero(solid)
        bx1, by1, bx2, by2 = px + int(cols.min()), py + int(rows.min()), px + int(cols.max()) + 1, py + int(rows.max()) + 1
        inside = solid[max(0, -py):max(0, H - py), max(0, -px):max(0, W - px)].sum()
        x, y, s, _ = t.at(k)
        # contact shadow: darkens the ground, not part of the object
        shadow_w = max(2, int((bx2 - bx1) * 0.55))
        cv2.ellipse(frame, (int(x), int(y)), (shadow_w, max(1, int(0.035 * s))), 0, 0, 360,
                    tuple(float(c) * 0.55 for c in plan.background[min(H - 1, max(0, int(y))), min(W - 1, max(0, int(x)))]), -1, cv2.LINE_AA)
        kernel = _motion_kernel(t.vx, t.vy, plan.camera.exposure)
        if kernel is not None:
            rgb = cv2.filter2D(rgb, -1, kernel, borderType=cv2.BORDER_CONSTANT)
            alpha = cv2.filter2D(alpha, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        _composite(frame, rgb, alpha, px, py)
        if inside >= MIN_INSIDE_FRACTION * total:
            box = [max(0, bx1), max(0, by1), min(W, bx2), min(H, by2)]
            if box[2] > box[0] and box[3] > box[1]:
                objects.append({"label": t.label, "box": box, "id": plan.tracks.index(t)})
    for rgb, alpha, px, py in plan.occluders:
        _composite(frame, rgb, alpha, px, py)
    if plan.camera.defocus_sigma > 0:
        frame = cv2.GaussianBlur(frame, (0, 0), plan.camera.defocus_sigma)
    rng = np.random.default_rng((plan.seed, k))
    noise = rng.standard_normal((H, W), dtype=np.float32) * plan.camera.noise_sigma
    frame += noise[..., None] + plan.camera.flicker * 255 * math.sin(0.7 * k)
    out = frame.clip(0, 255).astype(np.uint8)
    lut = plan.camera.lut
    out = np.dstack([cv2.LUT(out[..., c], lut[c]) for c in range(3)])
    return out, objects
