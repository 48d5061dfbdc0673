"""The preview screenshot in docs/: the real daemon on the demo clips (looped) with configs/demo.yaml's
zones, lines and tracking, and class-appears snapshots; Debian chromium headless through Selenium; the
grid once every tile has a frame and counts, and a few snapshots are listed.

    python scripts/preview_screenshot.py [docs/preview-grid.png]
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's pipeline and tests.support

from tests.support.daemon_harness import DaemonProcess, write_config  # noqa: E402

DEMO = REPO / "assets" / "demo"
CAMERAS = {"street": "street_1280x720.mp4", "plaza": "plaza_768x576.mp4", "yard": "yard_640x480.mp4"}


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "docs" / "preview-grid.png").resolve()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    rules = {cam["id"]: cam.get("analytics", {}) for cam in demo["cameras"]}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(
            Path(tmp) / "preview.yaml",
            [{"id": cid, "url": str(DEMO / clip), "loop": True, "analytics": rules.get(cid, {})}
             for cid, clip in CAMERAS.items()],
            {"path": str(DEMO / "detector.onnx"), "labels": str(DEMO / "labels.txt"), "input_size": 320,
             "score_threshold": 0.4, "iou_threshold": 0.5},
            analytics=demo["analytics"],
            preview={"bind": "127.0.0.1:18089", "fps": 2,
                     "snapshots": {"dir": str(Path(tmp) / "snapshots"), "classes": ["person", "car", "bicycle"],
                                   "cooldown_s": 2}})
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,760"):
            options.add_argument(arg)
        with DaemonProcess(cfg) as daemon:
            daemon.pump(4)
            driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
            try:
                driver.get("http://127.0.0.1:18089/")
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    daemon.pump(0.5)
                    ready = driver.execute_script(
                        "return [...document.querySelectorAll('figure.tile img')].filter(i => i.dataset.frame).length"
                        " === 3 && document.querySelectorAll('#event-list img').length >= 6"
                        " && [...document.querySelectorAll('#event-list img')].every(i => i.complete)"
                        " && [...document.querySelectorAll('figure.tile .analytics')].filter(e => e.textContent.includes(':'))"
                        ".length === 3"
                        " && document.getElementById('summary').textContent.includes('CPU');")
                    if ready:
                        break
                daemon.pump(1)
                driver.save_screenshot(str(out))
            finally:
                driver.quit()
            daemon.terminate()
            daemon.finish(20)
    print(out)


if __name__ == "__main__":
    main()
