"""Model output decoding: any model.format -> detections in source pixels."""
from pipeline.postprocess.decoders import Decoder, create_decoder, known_formats, register_decoder
from pipeline.postprocess.detections import DetectionPostprocessor, NonFiniteOutput, decoder_for
from pipeline.postprocess.nms import class_aware_nms
from pipeline.postprocess.yolo import YoloPostprocessor

__all__ = ["Decoder", "DetectionPostprocessor", "NonFiniteOutput", "YoloPostprocessor", "class_aware_nms",
           "create_decoder", "decoder_for", "known_formats", "register_decoder"]
