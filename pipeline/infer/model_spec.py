"""What a detector file is: its output format, input conventions, classes and batch, resolved once
at start-up from model.* and the ONNX file (input shape and type, output shapes, ultralytics
metadata `names`/`imgsz`/`stride`/`task`). Every backend, the preprocessor and the postprocessor
are built from the resulting ModelSpec; `pipeline check` prints `ModelSpec.describe()`.

A model that fits no format, or more than one while model.format is auto, is a ModelError: one
line naming the file, the output shapes found and the model.format values that would fit.
"""
from __future__ import annotations

import ast
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import ModelConfig

log = logging.getLogger(__name__)

ELEM_DTYPES = {1: np.dtype(np.float32), 10: np.dtype(np.float16), 2: np.dtype(np.uint8)}
SIZE_DTYPES = {7: np.dtype(np.int64), 6: np.dtype(np.int32), 1: np.dtype(np.float32)}
YOLO_STRIDES = (8, 16, 32)
# TF OD API exports (tf2onnx) name their outputs like this; anything else by role keywords.
_ROLE_WORDS = {"boxes": ("box",), "scores": ("score", "conf"), "classes": ("class", "label"),
               "num": ("num",)}


class ModelError(ValueError):
    """The model does not fit the config, or no output format fits it; str() is one line."""


@dataclass(frozen=True)
class InputSpec:
    name: str
    layout: str  # "NCHW" | "NHWC"
    dtype: np.dtype
    size: int  # S of the square S x S input
    channels: str  # "RGB" | "BGR"
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str  # "letterbox" | "stretch"
    pad_value: int
    size_input: str | None = None  # a second input [B, 2] fed (S, S): D-FINE's orig_target_sizes
    size_dtype: np.dtype | None = None

    def feeds(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The session inputs for a batch of images."""
        feeds = {self.name: images}
        if self.size_input is not None:
            feeds[self.size_input] = np.full((len(images), 2), self.size, self.size_dtype)
        return feeds

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        s = self.size
        return (batch, 3, s, s) if self.layout == "NCHW" else (batch, s, s, 3)


@dataclass(frozen=True)
class End2EndSpec:
    columns: tuple[str, ...]
    box: str
    normalized: bool
    class_base: int
    has_valid_column: bool  # a last column 1/0 from num_detections (added by pack_outputs)
    score_logits: bool = False


@dataclass(frozen=True)
class ModelSpec:
    path: Path
    format: str
    labels: tuple[str, ...]
    labels_source: str  # "config" | "metadata"
    input: InputSpec
    batch: int | None  # None: dynamic; else the static batch of the file
    output_names: tuple[str, ...]  # the outputs run, in pack order
    output_shapes: tuple[tuple[Any, ...], ...]
    num_detections: str | None = None
    end2end: End2EndSpec | None = None
    strides: tuple[int, ...] = YOLO_STRIDES  # yolox grid decode

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def output_problem(self, out: np.ndarray) -> str | None:
        """Why a (packed) output of this model does not have the shape its format decodes, or None."""
        c = self.num_classes
        if self.format == "yolov8":
            ok, want = out.shape[1] == 4 + c, f"[B, {4 + c}, N]"
        elif self.format in ("yolov5", "yolox"):
            ok, want = out.shape[2] == 5 + c, f"[B, N, {5 + c}]"
        else:
            e = self.end2end
            width = sum(4 if k == "box" else c if k == "classes" else 1 for k in e.columns) + e.has_valid_column
            ok, want = out.shape[2] == width, f"[B, N, {width}] (columns {list(e.columns)})"
        return None if ok else f"the {self.format} output is {list(out.shape)}; expected {want}"

    def convention(self) -> Any:
        """The preprocessor's InputConvention for this model's input."""
        from pipeline.preprocess.base import InputConvention

        i = self.input
        return InputConvention(layout=i.layout, channels=i.channels, scale=i.scale, mean=i.mean, std=i.std,
                               resize=i.resize, pad_value=i.pad_value)

    def describe(self, batch_note: str | None = None) -> str:
        i = self.input
        resize = f"letterbox pad {i.pad_value}" if i.resize == "letterbox" else "stretch"
        norm = ""
        if i.dtype != np.uint8 and (i.scale != 1 / 255 or any(i.mean) or any(s != 1 for s in i.std)):
            norm = f" scale {i.scale:.6g} mean {list(i.mean)} std {list(i.std)}"
        batch = "dynamic batch" if self.batch is None else f"batch {self.batch} static"
        if batch_note:
            batch += f" -> {batch_note}"
        sizes = f" (+ {i.size_input} fed {i.size}x{i.size})" if i.size_input else ""
        return (f"model: {self.format} layout, {self.num_classes} classes ({self.labels_source}), input "
                f"{i.size}x{i.size} {i.layout} {i.dtype} {i.channels}{norm} {resize}{sizes}, {batch}")


# ---------------------------------------------------------------------------------------- helpers

def _dims(shape: Any) -> list[Any]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim]


def _show(shape: tuple[Any, ...] | list[Any]) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) else (d or "?") for d in shape) + "]"


def _int(d: Any) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def metadata(model: Any) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def metadata_names(meta: dict[str, str]) -> list[str] | None:
    """ultralytics/YOLOv5 `names`: "{0: 'person', 1: 'bicycle'}" (or a list)."""
    raw = meta.get("names")
    if not raw:
        return None
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, dict):
        try:
            return [str(value[k]) for k in sorted(value, key=int)]
        except (TypeError, ValueError):
            return None
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return None


def metadata_imgsz(meta: dict[str, str]) -> int | None:
    try:
        value = ast.literal_eval(meta.get("imgsz", ""))
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
        return int(value[0])
    return None


def grid_points(size: int, strides: tuple[int, ...] = YOLO_STRIDES) -> int:
    return sum((size // s) ** 2 for s in strides)


def load_onnx(path: Path) -> Any:
    import onnx

    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf errors are long; one line is enough
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: cannot load ONNX model: {first}") from None


# ---------------------------------------------------------------------------------------- resolving

def resolve_model(cfg: ModelConfig, proto: Any | None = None) -> ModelSpec:
    """The ModelSpec for model.* (reads the file unless `proto` is given). Raises ModelError."""
    path = Path(cfg.path)
    model = proto if proto is not None else load_onnx(path)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    meta = metadata(model)
    task = meta.get("task", "detect")
    if task != "detect":  # ultralytics writes task; segment/pose/obb heads carry more than boxes
        raise ModelError(f"{path}: the model's metadata says task {task}; only detect models are supported")
    inp = _resolve_input(cfg, path, inputs, meta)
    outputs = [(o.name, tuple(_dims(o.type.tensor_type.shape))) for o in graph.output]
    if not outputs:
        raise ModelError(f"{path}: model has no outputs")
    names = metadata_names(meta)
    if cfg.labels:
        labels, source = tuple(cfg.labels), "config"
        if names is not None and len(names) != len(labels):
            raise ModelError(f"{path}: the model's metadata names {len(names)} classes but model.labels "
                             f"has {len(labels)}")
    elif names:
        labels, source = tuple(names), "metadata"
    else:
        raise ModelError(f"{path}: the model names no classes in its metadata; set model.labels "
                         f"(a list or a file, one name a line)")
    batch_dim = next(i for i in inputs if i.name == inp.name).type.tensor_type.shape.dim[0]
    batch = batch_dim.dim_value if batch_dim.HasField("dim_value") and batch_dim.dim_value > 0 else None
    fmt, picked, e2e, num = _resolve_format(cfg, path, outputs, len(labels), inp.size, meta)
    return ModelSpec(path=path, format=fmt, labels=labels, labels_source=source, input=inp, batch=batch,
                     output_names=tuple(n for n, _ in picked), output_shapes=tuple(s for _, s in picked),
                     num_detections=num, end2end=e2e)


def _resolve_input(cfg: ModelConfig, path: Path, inputs: list[Any], meta: dict[str, str]) -> InputSpec:
    if not inputs:
        raise ModelError(f"{path}: model has no inputs")
    shapes = [(i.name, _dims(i.type.tensor_type.shape)) for i in inputs]
    images = [n for n, s in shapes if len(s) == 4 and 3 in (s[1], s[3])]
    # D-FINE / RT-DETR (PaddleDetection-style) exports take the picture size [B, 2] as a second
    # input and scale their boxes by it: it is fed the input size (boxes in input pixels).
    sizes = [(n, i) for (n, s), i in zip(shapes, inputs) if len(s) == 2 and s[1] == 2 and "size" in n.lower()
             and i.type.tensor_type.elem_type in SIZE_DTYPES]
    size_input = size_dtype = None
    if len(inputs) == 2 and len(images) == 1 and len(sizes) == 1:
        size_input, size_dtype = sizes[0][0], SIZE_DTYPES[sizes[0][1].type.tensor_type.elem_type]
        shapes = [sh for sh in shapes if sh[0] != size_input]
    elif len(inputs) > 1:
        listed = ", ".join(f"{n} {_show(s)}" for n, s in shapes)
        what = "image inputs" if len(images) > 1 else "inputs"
        raise ModelError(f"{path}: model has {len(inputs)} {what} ({listed}); expected one image input")
    name, dims = shapes[0]
    if len(dims) != 4:
        raise ModelError(f"{path}: model input {name!r} is {_show(dims)} (rank {len(dims)}); expected a rank-4 "
                         f"image input [B, 3, S, S] or [B, S, S, 3]")
    want = cfg.input
    layout = want.layout
    if layout is None:
        if dims[1] == 3:
            layout = "NCHW"
        elif dims[3] == 3:
            layout = "NHWC"
        else:
            raise ModelError(f"{path}: model input {name!r} is {_show(dims)}: no 3-channel axis; set "
                             f"model.input.layout (NCHW or NHWC)")
    c, h, w = (dims[1], dims[2], dims[3]) if layout == "NCHW" else (dims[3], dims[1], dims[2])
    if _int(c) is not None and c != 3:
        raise ModelError(f"{path}: model input {name!r} is {_show(dims)}: {c} channels in {layout}; expected 3")
    h, w = _int(h), _int(w)
    if h is not None and w is not None and h != w:
        raise ModelError(f"{path}: model input {name!r} is {_show(dims)}: {w}x{h} is not square; "
                         f"re-export it with a square input size")
    static = h or w
    configured = "input_size" in cfg.model_fields_set
    if static is not None:
        if configured and cfg.input_size != static:
            raise ModelError(f"{path}: model input {name!r} is {_show(dims)} but model.input_size is "
                             f"{cfg.input_size}")
        size = static
    else:
        size = cfg.input_size if configured else (metadata_imgsz(meta) or cfg.input_size)
    elem = inputs[0].type.tensor_type.elem_type
    if elem not in ELEM_DTYPES:
        raise ModelError(f"{path}: model input {name!r} has ONNX element type {elem}; expected float, "
                         f"float16 or uint8")
    dtype = ELEM_DTYPES[elem]
    if want.dtype is not None and np.dtype(want.dtype) != dtype:
        raise ModelError(f"{path}: model input {name!r} is {dtype} but model.input.dtype is {want.dtype}")
    scale = want.scale if want.scale is not None else (1.0 if dtype == np.uint8 else 1 / 255)
    if dtype == np.uint8 and (scale != 1.0 or any(want.mean) or any(s != 1 for s in want.std)):
        raise ModelError(f"{path}: model input {name!r} is uint8 (raw pixels): model.input.scale, mean "
                         f"and std cannot apply")
    return InputSpec(name=name, layout=layout, dtype=dtype, size=size, channels=want.channels, scale=scale,
                     mean=tuple(want.mean), std=tuple(want.std), resize=want.resize,
                     pad_value=want.pad_value, size_input=size_input, size_dtype=size_dtype)


def _fits(shape: tuple[Any, ...], classes: int, size: int) -> dict[str, str]:
    """Formats a single [B, a, b] output fits, with why (for auto and for the error message)."""
    if len(shape) != 3:
        return {}
    a, b = _int(shape[1]), _int(shape[2])
    fits: dict[str, str] = {}
    grid = grid_points(size)
    if a == 4 + classes and (b is None or b > a):
        fits["yolov8"] = "[B, 4+C, N]"
    if b == 5 + classes and (a is None or a > b):
        if a is None or a != grid:
            fits["yolov5"] = "[B, N, 5+C]"
        if a is None or a == grid:
            fits["yolox"] = "[B, N, 5+C] on a stride 8/16/32 grid"
            fits.setdefault("yolov5", "[B, N, 5+C]")
    if (b == 6 or b == 4 + classes) and (a is None or a <= 1000):  # end-to-end exports keep 100..300 rows
        fits["end2end"] = "[B, N, 6] or [B, N, 4+C]"
    return fits


def _class_hint(shape: tuple[Any, ...], classes: int, cfg: ModelConfig) -> str:
    """Why nothing fits, where the shape would fit with another class count (or transposed)."""
    a, b = _int(shape[1]), _int(shape[2])
    source = f"model.labels has {classes}" if cfg.labels else f"the metadata names {classes}"
    if b == 4 + classes and (a is None or a > b):
        return f" (transposed? yolov8 wants [B, {4 + classes}, N])"
    if a is not None and a > 4 and (b is None or b > a):
        return f" (as yolov8 it has {a - 4} classes, but {source})"
    if b is not None and b > 5 and (a is None or a > b):
        return f" (as yolov5/yolox it has {b - 5} classes, but {source})"
    return ""


def _resolve_format(cfg: ModelConfig, path: Path, outputs: list[tuple[str, tuple[Any, ...]]], classes: int,
                    size: int, meta: dict[str, str]) -> tuple[str, list[tuple[str, tuple[Any, ...]]],
                                                             End2EndSpec | None, str | None]:
    shapes = ", ".join(f"{n} {_show(s)}" for n, s in outputs)
    want = cfg.format
    if len(outputs) == 1:
        name, shape = outputs[0]
        if len(shape) != 3:
            raise ModelError(f"{path}: model output {name!r} is {_show(shape)} (rank {len(shape)}); no "
                             f"model.format fits (yolov8 [B, 4+C, N], yolov5/yolox [B, N, 5+C], "
                             f"end2end [B, N, 6])")
        fits = _fits(shape, classes, size)
        if want == "auto":
            if "yolov8" in fits and "yolov5" not in fits and "yolox" not in fits:
                fits = {"yolov8": fits["yolov8"]}  # a transposed end2end [B, 4+C, N] is not a thing
            if set(fits) == {"yolov5", "end2end"} and "names" in meta:
                fits = {"yolov5": fits["yolov5"]}  # YOLOv5's export.py writes names; end2end exports too, but as [B, N, 6]
            if len(fits) != 1:
                if not fits:
                    raise ModelError(f"{path}: output {shapes} fits no model.format for {classes} classes"
                                     f"{_class_hint(shape, classes, cfg)}; yolov8 wants [B, {4 + classes}, N], "
                                     f"yolov5/yolox [B, N, {5 + classes}], end2end [B, N, 6]")
                raise ModelError(f"{path}: output {shapes} is ambiguous for {classes} classes: set model.format "
                                 f"to one of {', '.join(sorted(fits))}")
            fmt = next(iter(fits))
        else:
            fmt = want
            # an explicit end2end is checked against its columns (_end2end_single), not the usual shapes
            if fmt not in fits and fmt != "end2end":
                other = f"; it fits {', '.join(sorted(fits))}" if fits else "; no model.format fits it"
                raise ModelError(f"{path}: model.format {fmt} does not fit output {shapes} with {classes} "
                                 f"classes{other}")
        e2e = _end2end_single(cfg, path, shape, classes) if fmt == "end2end" else None
        return fmt, [outputs[0]], e2e, None
    if want not in ("auto", "end2end"):
        raise ModelError(f"{path}: model.format {want} takes one output; the model has {shapes} "
                         f"(several outputs fit model.format end2end)")
    return ("end2end", *_end2end_multi(cfg, path, outputs, shapes))


def _end2end_single(cfg: ModelConfig, path: Path, shape: tuple[Any, ...], classes: int) -> End2EndSpec:
    e = cfg.end2end
    cols = _int(shape[2])
    columns = e.columns
    if columns is None:
        if cols in (6, 7) and cols != 4 + classes:
            columns = ["box", "score", "class"] + (["skip"] if cols == 7 else [])  # YOLOv10, NMS exports
        else:
            columns = ["box", "classes"]  # ultralytics RT-DETR: cxcywh 0..1, one score per class
    ultralytics_detr = columns == ["box", "classes"] and e.columns is None
    box = e.box or ("cxcywh" if ultralytics_detr else "xyxy")
    normalized = e.normalized if e.normalized is not None else ultralytics_detr
    width = sum(4 if c == "box" else 1 for c in columns if c != "classes")
    if "classes" in columns:
        if cols is not None and cols - width != classes:
            raise ModelError(f"{path}: end2end columns {columns} leave {cols - width} class scores in output "
                             f"{_show(shape)} but there are {classes} classes")
    elif cols is not None and cols != width:
        raise ModelError(f"{path}: end2end columns {columns} take {width} columns but the output is "
                         f"{_show(shape)}; set model.end2end.columns")
    return End2EndSpec(tuple(columns), box, normalized, e.class_base or 0, has_valid_column=False,
                       score_logits=e.score_logits)


def _role(name: str) -> str | None:
    low = name.lower()
    for role, words in _ROLE_WORDS.items():
        if any(w in low for w in words):
            return role
    return None


def _end2end_multi(cfg: ModelConfig, path: Path, outputs: list[tuple[str, tuple[Any, ...]]],
                   shapes: str) -> tuple[list[tuple[str, tuple[Any, ...]]], End2EndSpec, str | None]:
    e = cfg.end2end
    by_name = dict(outputs)
    num = e.num_detections
    if e.outputs:
        missing = [n for n in [*e.outputs, *([num] if num else [])] if n not in by_name]
        if missing:
            raise ModelError(f"{path}: model.end2end names outputs {missing} the model lacks; it has {shapes}")
        picked = [(n, by_name[n]) for n in e.outputs]
        columns = e.columns or ["box", "score", "class"]
    else:
        roles: dict[str, str] = {}
        for n, s in outputs:
            role = _role(n)
            if role == "scores" and len(s) == 3 and _int(s[2]) not in (None, 1):
                continue  # per-class score maps (detection_multiclass_scores) are not the final scores
            if role and role not in roles and not n.lower().startswith("raw_"):
                roles[role] = n
        if not {"boxes", "scores", "classes"} <= set(roles):
            raise ModelError(f"{path}: output {shapes} fits no model.format: several outputs need end2end with "
                             f"boxes, scores and classes outputs (set model.end2end.outputs)")
        picked = [(roles[r], by_name[roles[r]]) for r in ("boxes", "scores", "classes")]
        columns = e.columns or ["box", "score", "class"]
        num = num or roles.get("num")
    for n, s in picked:
        if len(s) not in (2, 3):
            raise ModelError(f"{path}: end2end output {n!r} is {_show(s)}; expected [B, N] or [B, N, k]")
    tf_style = all(n.startswith("detection_") for n, _ in picked)  # TF OD API via tf2onnx
    box = e.box or ("yxyx" if tf_style else "xyxy")
    normalized = e.normalized if e.normalized is not None else tf_style
    class_base = e.class_base if e.class_base is not None else (1 if tf_style else 0)
    return picked, End2EndSpec(tuple(columns), box, normalized, class_base, has_valid_column=num is not None,
                               score_logits=e.score_logits), num


def tensorrt_spec(cfg: ModelConfig) -> ModelSpec:
    """The spec for backend tensorrt, which builds engines for the yolov8 layout with an NCHW float
    input only (its device-side candidate graph and output checks assume them): anything else is
    refused in one line, before an engine build is started."""
    spec = resolve_model(cfg)
    if spec.format != "yolov8":
        raise ModelError(f"{spec.path}: model.format {spec.format} runs on backend onnxruntime only; backend "
                         f"tensorrt decodes the yolov8 layout [B, 4+C, N] (docs/models.md)")
    if spec.input.layout != "NCHW" or spec.input.dtype == np.uint8:
        raise ModelError(f"{spec.path}: backend tensorrt takes NCHW float inputs; this model's input is "
                         f"{spec.input.layout} {spec.input.dtype} (use backend onnxruntime)")
    return spec


# ---------------------------------------------------------------------------------------- running

def pack_outputs(spec: ModelSpec, outputs: list[np.ndarray], count: int) -> np.ndarray:
    """The run outputs (spec.output_names, then num_detections if any) -> one float32 array for the
    postprocess: the single output as it is, or several end2end outputs side by side [B, N, cols]
    (+1 column, 1 for the first num_detections rows, else 0)."""
    if len(spec.output_names) == 1 and spec.num_detections is None:
        return np.asarray(outputs[0][:count], dtype=np.float32)
    parts = []
    for out in outputs[:len(spec.output_names)]:
        a = np.asarray(out[:count], dtype=np.float32)
        parts.append(a[..., None] if a.ndim == 2 else a)
    rows = min(p.shape[1] for p in parts)
    packed = np.concatenate([p[:, :rows] for p in parts], axis=2)
    if spec.num_detections is not None:
        num = np.asarray(outputs[len(spec.output_names)][:count]).reshape(count, -1)[:, 0]
        valid = (np.arange(rows)[None, :] < num[:, None]).astype(np.float32)
        packed = np.concatenate([packed, valid[..., None]], axis=2)
    return packed


def run_names(spec: ModelSpec) -> list[str]:
    return [*spec.output_names, *([spec.num_detections] if spec.num_detections else [])]


def with_dynamic_batch(model: Any) -> Any:
    """A copy of the model with the batch dimension of its input and outputs made symbolic."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    for value in [*out.graph.input, *out.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = "batch"
    del out.graph.value_info[:]  # intermediate shapes recorded with batch 1 would contradict
    return out


def batch_plan(spec: ModelSpec, max_batch: int) -> tuple[str | None, Any]:
    """How a model with a static batch runs the scheduler's batches: (what was done, for the start-up
    line; the model with a dynamic batch or None). A static batch of 1 is made dynamic when a batch of
    2 then runs exactly like two batches of 1 (checked on ONNX Runtime's CPU), else one call per frame;
    a larger static batch is padded to its size."""
    if spec.batch is None:
        return None, None
    if spec.batch != 1:
        return f"batches padded to {spec.batch}", None
    if max_batch == 1:
        return None, None
    dynamic = with_dynamic_batch(load_onnx(spec.path))
    why = check_dynamic_batch(dynamic, spec)
    if why is None:
        return "made dynamic", dynamic
    log.warning("%s: the static batch of 1 cannot be made dynamic (%s); one model call per frame", spec.path, why)
    return "per-frame calls", None


def describe_model(cfg: ModelConfig, max_batch: int) -> str:
    """The line `pipeline check` prints (and the backend logs at start-up). Raises ModelError."""
    if cfg.backend == "tensorrt":  # its own limits; engines are built with the batch the file allows
        return tensorrt_spec(cfg).describe()
    spec = resolve_model(cfg)
    return spec.describe(batch_plan(spec, max_batch)[0])


def check_dynamic_batch(model: Any, spec: ModelSpec) -> str | None:
    """None when `model` (with_dynamic_batch) runs a batch of 2 exactly like two batches of 1 on
    ONNX Runtime's CPU; else why not (e.g. a Reshape with the batch size built in)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(model.SerializeToString(), sess_options=options,
                                       providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, spec.input.shape(2)).astype(np.uint8)
        x = pixels if spec.input.dtype == np.uint8 else (pixels * spec.input.scale).astype(spec.input.dtype)
        names = run_names(spec)
        both = session.run(names, spec.input.feeds(x))
        singles = [session.run(names, spec.input.feeds(x[i:i + 1])) for i in range(2)]
    except Exception as exc:  # noqa: BLE001 - any failure means: keep the static batch
        text = str(exc).strip().splitlines()
        return text[0][:160] if text else type(exc).__name__
    for k, name in enumerate(names):
        joined = np.concatenate([singles[0][k], singles[1][k]])
        if both[k].shape != joined.shape:
            return f"output {name!r} is {list(both[k].shape)} for a batch of 2"
        if not np.allclose(both[k], joined, rtol=1e-3, atol=1e-3, equal_nan=True):
            return f"output {name!r} of a batch of 2 differs from two batches of 1"
    return None
