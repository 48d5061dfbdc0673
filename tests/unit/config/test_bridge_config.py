from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError
from pipeline.config.bridge import load_bridge_config, parse_bridge_config

REPO = Path(__file__).resolve().parents[3]


def test_reference_config_loads() -> None:
    cfg = load_bridge_config(REPO / "configs" / "bridge.yaml")
    assert [s.type for s in cfg.sinks] == ["mqtt", "redis"]


@pytest.mark.parametrize("text, error", [
    ("sinks: []\n", "<b>:1: sinks: at least one sink is needed"),
    ("sinks:\n  - type: mqtt\n    name: a\n    url: http://h:1\n", "<b>:4: sinks[0].url: url scheme http:// is not one of"),
    ("sinks:\n  - type: mqtt\n    name: a\n    url: 'mqtt://u:secret@h:99999'\n", "<b>:4: sinks[0].url: url is not a valid URL"),
    ("sinks:\n  - type: redis\n    name: a\n    url: redis://h\n    qos: 1\n", "<b>:5: sinks[0].qos: unknown key 'qos'"),
    ("sinks:\n  - type: mqtt\n    name: a\n    url: mqtt://h\n    qos: 3\n", "<b>:5: sinks[0].qos: Input should be less"),
    ("sinks:\n  - type: kafka\n    name: a\n", "<b>:2: sinks[0].type: kafka is not offered yet"),
    ("sinks:\n  - {type: redis, name: a, url: 'redis://h', stream: 'x:{cam}'}\n", "sinks[0].stream: stream 'x:{cam}': the only placeholder is {camera}"),
    ("sinks:\n  - {type: redis, name: a, url: 'redis://h'}\n  - {type: mqtt, name: a, url: 'mqtt://h'}\n",
     "sink name 'a' is used twice"),
    ("sinks:\n  - {type: mqtt, name: a, url: 'mqtts://h', tls: {ca_file: nope.pem}}\n", "sinks[0].tls.ca_file: no such file"),
])
def test_errors_are_one_line_with_file_line_and_path(text: str, error: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_bridge_config(text, source="<b>", base=tmp_path)
    assert error in str(exc.value) and "\n" not in str(exc.value)
    assert "secret" not in str(exc.value)
