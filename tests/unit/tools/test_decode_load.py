"""scripts/gpu_lab/decode_load.py: a decode-only load paced at the cameras' rate (real video, the
daemon's decode path; here PyAV on the CPU)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "gpu_lab" / "decode_load.py"
spec = importlib.util.spec_from_file_location("decode_load", SCRIPT)
decode_load = importlib.util.module_from_spec(spec)
spec.loader.exec_module(decode_load)

CLIP = ROOT / "assets" / "demo" / "yard_640x480.mp4"


def _native_fps(path: Path) -> float:
    import av

    with av.open(str(path)) as container:
        return float(container.streams.video[0].average_rate)


def test_real_time_load_is_paced_at_the_clip_rate(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    rc = decode_load.main([str(ROOT / "configs" / "bench-cpu.yaml"), "--media", str(CLIP), "--streams", "2",
                           "--seconds", "1.5", "--warmup", "0.2", "--json", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["realtime"] is True and result["streams"] == 2 and result["error"] is None
    per_stream = result["fps"] / 2
    native = _native_fps(CLIP)
    # paced: never faster than the clip (a little over for frames counted at the window's edges)
    assert 0 < per_stream <= native * 1.25, (per_stream, native)


def test_a_missing_clip_is_one_line(tmp_path: Path, capsys) -> None:
    rc = decode_load.main([str(ROOT / "configs" / "bench-cpu.yaml"), "--media", str(tmp_path / "none.mp4")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("decode_load: --media ") and "no such file" in err and "\n" not in err
