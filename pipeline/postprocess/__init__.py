"""Model output decoding: YOLOv8 layout -> detections in source pixels."""
from pipeline.postprocess.nms import class_aware_nms
from pipeline.postprocess.yolo import YoloPostprocessor

__all__ = ["YoloPostprocessor", "class_aware_nms"]
