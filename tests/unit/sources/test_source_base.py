"""Source registry and create_source."""
from __future__ import annotations

import threading
from typing import get_args

import pytest

from pipeline.config import CameraConfig, DecodeConfig
from pipeline.frame import CameraState
from pipeline.observe.metrics import Metrics
from pipeline.sources import FileSource, NetworkSource, SyntheticSource, create_source
from pipeline.sources.base import Ending, Source, register_source, source_class
from pipeline.sources.plugins import SOURCE_KEYS, SOURCE_PLUGINS


@pytest.mark.parametrize("url, cls", [
    ("/data/a.mp4", FileSource),
    ("rtsp://cam/x", NetworkSource),
    ("https://host/live.m3u8", NetworkSource),
    ("synthetic:64x48@25", SyntheticSource),
])
def test_create_source_picks_the_class_by_resolved_type(url, cls):
    cam = CameraConfig(id="c", url=url)
    source = create_source(cam, DecodeConfig(), lambda f: None, lambda e: None, threading.Event(), Metrics())
    assert type(source) is cls and source.type_key == cam.type and source.state is None


def test_registry_kinds_are_the_schema_kinds():
    """cameras[].type accepts exactly the kinds create_source can build (plus auto), and each
    kind's module registers a class under its own key."""
    schema = set(get_args(CameraConfig.model_fields["type"].annotation))
    assert schema == {"auto", *SOURCE_KEYS} == {"auto", "file", "network", "synthetic"}
    for plugin in SOURCE_PLUGINS:
        assert source_class(plugin.key).type_key == plugin.key


def test_an_undeclared_kind_cannot_register():
    class Carrier(Source):
        type_key = "pigeon"

        def _stream(self) -> Ending:
            return Ending(CameraState.EOF, "")

    with pytest.raises(ValueError, match="not declared in pipeline/sources/plugins.py"):
        register_source(Carrier)


def test_registering_a_second_class_for_a_type_fails():
    class OtherFile(Source):
        type_key = "file"

        def _stream(self) -> Ending:
            return Ending(CameraState.EOF, "")

    with pytest.raises(ValueError, match="already registered by FileSource"):
        register_source(OtherFile)


def test_a_failing_status_consumer_does_not_break_the_source():
    def broken_status(event):
        raise RuntimeError("publisher gone")

    frames = []
    stop = threading.Event()
    cam = CameraConfig(id="c", url="synthetic:16x16@100", realtime=False)

    def sink(frame):
        frames.append(frame)
        if len(frames) == 3:
            stop.set()

    source = create_source(cam, DecodeConfig(), sink, broken_status, stop, Metrics())
    source.run()  # returns, does not raise
    assert len(frames) == 3 and source.state is CameraState.STOPPED
