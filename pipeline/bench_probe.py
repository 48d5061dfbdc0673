"""Resource use of this process over a measured window: CPU %, peak RSS, peak GPU memory.

CPU % is process CPU time (every thread, user + system) over wall time, so 200 means two cores busy.
RSS and GPU memory are sampled by a background thread (the kernel's VmHWM is a lifetime peak, useless
per stage). GPU memory comes from NVML (nvidia-ml-py) when installed, else from `nvidia-smi`; it is
this process's memory when the driver lists our pid, else the whole device's used memory (containers
hide pids); `scope` says which.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from typing import Callable

from pipeline.bench_report import Resources

RSS_INTERVAL_S = 0.05
NVIDIA_SMI_INTERVAL_S = 1.0  # a subprocess per sample: keep it rare
PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_MIB


class GpuMemoryReader:
    """Reads this process's (or the device's) used GPU memory in MiB; `available` False without a GPU."""

    def __init__(self, gpu_id: int = 0) -> None:
        self.gpu_id = gpu_id
        self.scope: str | None = None  # "process" | "device" once a reading succeeded
        self.name: str | None = None
        self.interval_s = RSS_INTERVAL_S
        self._read: Callable[[], float | None] | None = None
        try:
            import pynvml  # nvidia-ml-py, optional

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(gpu_id)
            name = pynvml.nvmlDeviceGetName(self._handle)
            self.name = name.decode() if isinstance(name, bytes) else name
            self._read = self._read_nvml
        except Exception:  # noqa: BLE001 - no module, no driver, no device: try nvidia-smi
            if shutil.which("nvidia-smi") and self._smi(["--query-gpu=name"]):
                self.name = self._smi(["--query-gpu=name"])[0]
                self._read = self._read_smi
                self.interval_s = NVIDIA_SMI_INTERVAL_S

    @property
    def available(self) -> bool:
        return self._read is not None

    def read(self) -> float | None:
        try:
            return self._read() if self._read else None
        except Exception:  # noqa: BLE001 - a flaky reading must not end the benchmark
            return None

    def _read_nvml(self) -> float | None:
        nvml = self._nvml
        for proc in nvml.nvmlDeviceGetComputeRunningProcesses(self._handle):
            if proc.pid == os.getpid() and proc.usedGpuMemory is not None:
                self.scope = "process"
                return proc.usedGpuMemory / 2**20
        self.scope = "device"
        return nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20

    def _read_smi(self) -> float | None:
        for line in self._smi(["--query-compute-apps=pid,used_memory"]):
            pid, _, used = line.partition(",")
            if pid.strip() == str(os.getpid()):
                self.scope = "process"
                return float(used)
        lines = self._smi(["--query-gpu=memory.used"])
        if not lines:
            return None
        self.scope = "device"
        return float(lines[0])

    def _smi(self, query: list[str]) -> list[str]:
        try:
            out = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits", "-i", str(self.gpu_id)],
                                 capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return []
        return [ln.strip() for ln in out.stdout.splitlines() if ln.strip()] if out.returncode == 0 else []


class ResourceProbe:
    """`start()` ... `stop() -> Resources`: one measured window."""

    def __init__(self, gpu: GpuMemoryReader) -> None:
        self._gpu = gpu
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._rss_peak = 0.0
        self._gpu_peak: float | None = None
        self._wall0 = self._cpu0 = 0.0

    def start(self) -> "ResourceProbe":
        self._rss_peak = rss_mib()
        self._gpu_peak = self._gpu.read()
        self._wall0, self._cpu0 = time.monotonic(), time.process_time()
        self._thread = threading.Thread(target=self._sample, name="bench-probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Resources:
        wall = time.monotonic() - self._wall0
        cpu = time.process_time() - self._cpu0
        self._done.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self._rss_peak = max(self._rss_peak, rss_mib())
        return Resources(round(100.0 * cpu / wall, 1) if wall > 0 else 0.0, round(self._rss_peak, 1),
                         None if self._gpu_peak is None else round(self._gpu_peak, 1))

    def _sample(self) -> None:
        next_gpu = time.monotonic() + self._gpu.interval_s
        while not self._done.wait(RSS_INTERVAL_S):
            self._rss_peak = max(self._rss_peak, rss_mib())
            if self._gpu.available and time.monotonic() >= next_gpu:
                next_gpu += self._gpu.interval_s
                used = self._gpu.read()
                if used is not None:
                    self._gpu_peak = used if self._gpu_peak is None else max(self._gpu_peak, used)
