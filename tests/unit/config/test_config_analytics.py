"""analytics config: zones and lines per camera, tracking on top; every bad rule is one line
`file.yaml:LINE: dotted.path: message`, and `pipeline check` exits 2 on it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import ConfigError, parse_config

REPO = Path(__file__).resolve().parents[3]
HEAD = """\
cameras:
  - id: gate
    url: synthetic:640x480@10
    analytics:
      frame_size: [640, 480]
"""
TAIL = """\
model:
  path: m.onnx
  labels: [person, car]
analytics:
  tracking: true
"""
GOOD_RULES = """\
      zones:
        - name: door
          points: [[10, 10], [300, 10], [300, 200], [10, 200]]
          classes: [person]
          loiter_s: 5
      lines:
        - name: kerb
          start: [0, 400]
          end: [640, 400]
"""


def parse(rules: str, head: str = HEAD, tail: str = TAIL):
    return parse_config(head + rules + tail, source="cfg.yaml", check_files=False)


def test_good_rules_load_in_pixels_and_fractions() -> None:
    cam = parse(GOOD_RULES).cameras[0]
    assert cam.analytics.zones[0].classes == ["person"] and cam.analytics.lines[0].end == (640, 400)
    assert cam.analytics.fractions([(320, 240)]).tolist() == [[0.5, 0.5]]
    fractions = HEAD.replace("      frame_size: [640, 480]\n", "")
    cam = parse("      lines: [{name: l, start: [0, 0.5], end: [1, 0.5]}]\n", head=fractions).cameras[0]
    assert cam.analytics.frame_size is None and cam.analytics.lines[0].start == (0, 0.5)


BAD = {
    "self-intersecting polygon": ("      zones: [{name: z, points: [[0, 0], [100, 100], [100, 0], [0, 100]]}]\n",
                                  6, "cameras[0].analytics.zones[0].points: the polygon intersects itself"),
    "two points": ("      zones: [{name: z, points: [[0, 0], [100, 100]]}]\n",
                   6, "cameras[0].analytics.zones[0].points: a zone needs at least 3 points, got 2"),
    "zero-length line": ("      lines:\n        - name: l\n          start: [5, 5]\n          end: [5, 5]\n",
                         7, "cameras[0].analytics.lines[0]: line 'l' has zero length"),
    "outside the frame": ("      lines:\n        - name: l\n          start: [0, 10]\n          end: [700, 10]\n",
                          9, "cameras[0].analytics.lines[0].end: point [700, 10] is outside the frame: "
                             "coordinates are pixels of frame_size 640x480"),
    "fractions above 1": ("      zones: [{name: z, points: [[0, 0], [1.5, 0], [1, 1]]}]\n",
                          5, "cameras[0].analytics.zones[0].points[1]: point [1.5, 0] is outside the frame: "
                             "coordinates are fractions 0..1"),
    "unknown class": ("      zones:\n        - name: z\n          points: [[0, 0], [9, 0], [9, 9]]\n"
                      "          classes: [person, bus]\n",
                      9, "cameras[0].analytics.zones[0].classes[1]: unknown class 'bus' (model.labels: person, car)"),
    "duplicate name": ("      zones: [{name: a, points: [[0, 0], [9, 0], [9, 9]]}]\n"
                       "      lines: [{name: a, start: [0, 0], end: [9, 9]}]\n",
                       7, "cameras[0].analytics.lines[0].name: name 'a' is used twice"),
    "bad name": ("      lines: [{name: 'a b', start: [0, 0], end: [9, 9]}]\n",
                 6, "cameras[0].analytics.lines[0].name: name 'a b' must match"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_rule_is_one_line_naming_file_line_and_path(case: str) -> None:
    rules, line, message = BAD[case]
    head = HEAD.replace("      frame_size: [640, 480]\n", "") if case == "fractions above 1" else HEAD
    with pytest.raises(ConfigError) as err:
        parse(rules, head=head)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"cfg.yaml:{line}: {message}"), text


def test_rules_need_tracking_on() -> None:
    with pytest.raises(ConfigError, match=r"^cfg.yaml:4: cameras\[0\].analytics: zones and lines need "
                                          r"analytics.tracking: true$"):
        parse(GOOD_RULES, tail=TAIL.replace("tracking: true", "tracking: false"))


def test_tracker_settings_are_ranged() -> None:
    with pytest.raises(ConfigError, match=r"^cfg.yaml:\d+: analytics.lost_frames: "):
        parse("", tail=TAIL + "  lost_frames: 0\n")


def test_pipeline_check_exits_2_on_a_bad_zone(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    (tmp_path / "m.onnx").write_bytes(b"x")
    cfg.write_text(HEAD + BAD["self-intersecting polygon"][0] + TAIL)
    run = subprocess.run([sys.executable, "-m", "pipeline", "check", str(cfg)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"{cfg}:6: cameras[0].analytics.zones[0].points: the polygon intersects itself" in lines[0]
