"""A reload that changes only a camera's zones/lines does not restart it; any other change does."""
from __future__ import annotations

from pipeline.app.config_diff import diff_configs
from pipeline.config import parse_config

BASE = """\
cameras:
  - id: a
    url: synthetic:64x48@10
    analytics: {zones: [{name: z, points: [[0, 0], [0.5, 0], [0.5, 0.5]]}]}
  - id: b
    url: synthetic:64x48@10
model: {path: m.onnx, labels: [person]}
analytics: {tracking: true}
"""


def parse(text: str):
    return parse_config(text, source="cfg.yaml", check_files=False)


def test_rules_only_change_is_applied_live() -> None:
    new = BASE.replace("[[0, 0], [0.5, 0], [0.5, 0.5]]", "[[0, 0], [1, 0], [1, 1]]")
    change = diff_configs(parse(BASE), parse(new))
    assert [c.id for c in change.rules_changed] == ["a"] and change.changed == ()
    assert change.unchanged == ("b",) and not change.cameras_changed
    assert "1 with new zones/lines (a)" in change.summary()
    assert change.applied.cameras[0].analytics.zones[0].points[1] == (1, 0)


def test_source_and_rules_change_restarts() -> None:
    new = BASE.replace("synthetic:64x48@10\n    analytics", "synthetic:96x64@10\n    analytics")
    new = new.replace("[[0, 0], [0.5, 0], [0.5, 0.5]]", "[[0, 0], [1, 0], [1, 1]]")
    change = diff_configs(parse(BASE), parse(new))
    assert [c.id for c in change.changed] == ["a"] and change.rules_changed == ()
