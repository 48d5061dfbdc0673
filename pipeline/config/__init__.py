"""Typed configuration: one pydantic model per section (extra="forbid"), loaded from YAML by
`load_config`, every error one line naming file:line and the dotted key (ConfigError).
"""
from pipeline.config.analytics import AnalyticsConfig, CameraAnalyticsConfig, LineConfig, ZoneConfig
from pipeline.config.base import ConfigError, StrictModel
from pipeline.config.camera import CAMERA_ID, NETWORK_SCHEMES, CameraConfig
from pipeline.config.loader import ENV_REF, load_config, parse_config
from pipeline.config.model import CalibrationConfig, ModelConfig, OnnxRuntimeConfig, TensorRtConfig  # the last three: declared by the backend plug-ins
from pipeline.config.pipeline import PipelineConfig
from pipeline.config.preview import PreviewConfig, SnapshotsConfig
from pipeline.config.stages import (CurveConfig, DecodeConfig, MetricsConfig, PreprocessConfig,
                                    PublishConfig, SchedulerConfig)

__all__ = [
    "AnalyticsConfig", "CameraAnalyticsConfig", "LineConfig", "ZoneConfig",
    "CAMERA_ID", "ENV_REF", "NETWORK_SCHEMES", "CalibrationConfig", "CameraConfig", "ConfigError",
    "CurveConfig", "DecodeConfig", "MetricsConfig", "ModelConfig", "OnnxRuntimeConfig", "PipelineConfig",
    "PreprocessConfig", "PreviewConfig", "PublishConfig", "SchedulerConfig", "SnapshotsConfig", "StrictModel", "TensorRtConfig",
    "load_config", "parse_config",
]
