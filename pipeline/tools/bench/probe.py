"""Resource use of this process and its child processes (decode workers) over a measured window:
CPU %, peak RSS, peak GPU memory, and this process's garbage-collector pauses.

CPU % is CPU time (every thread, user + system) over wall time, so 200 means two cores busy.
RSS and GPU memory are sampled by a background thread (the kernel's VmHWM is a lifetime peak, useless
per stage). GPU memory comes from NVML (nvidia-ml-py) when installed, else from `nvidia-smi`; it is
this process's memory when the driver lists our pid, else the whole device's used memory (containers
hide pids); `scope` says which.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import threading
import time
from typing import Callable

from pipeline.app.interpreter import GcPauses
from pipeline.tools.bench.report import Resources

RSS_INTERVAL_S = 0.05
NVIDIA_SMI_INTERVAL_S = 1.0  # a subprocess per sample: keep it rare
PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def family_pids() -> list[int]:
    """This process and its live multiprocessing children (the daemon's decode workers)."""
    return [os.getpid(), *(child.pid for child in multiprocessing.active_children() if child.pid)]


def rss_mib(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_MIB
        except (OSError, ValueError, IndexError):  # a child that just exited
            pass
    return total


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds so far of each pid that still exists."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
        except (OSError, ValueError, IndexError):
            pass
    return out


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
        ours = set(family_pids())
        used = [proc.usedGpuMemory for proc in nvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
                if proc.pid in ours and proc.usedGpuMemory is not None]
        if used:
            self.scope = "process"
            return sum(used) / 2**20
        self.scope = "device"
        return nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20

    def _read_smi(self) -> float | None:
        ours = {str(pid) for pid in family_pids()}
        used = [float(line.partition(",")[2]) for line in self._smi(["--query-compute-apps=pid,used_memory"])
                if line.partition(",")[0].strip() in ours]
        if used:
            self.scope = "process"
            return sum(used)
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
        self._children0: dict[int, float] = {}
        self._processes = 1
        self._gc: list[float] = []  # seconds of each collection in the window
        self._gc_pauses = GcPauses(lambda _generation, seconds: self._gc.append(seconds))

    def start(self) -> "ResourceProbe":
        self._gc_pauses.start()
        self._sample_family()
        self._gpu_peak = self._gpu.read()
        self._wall0, self._cpu0 = time.monotonic(), time.process_time()
        self._children0 = cpu_seconds(family_pids()[1:])
        self._thread = threading.Thread(target=self._sample, name="bench-probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Resources:
        wall = time.monotonic() - self._wall0
        cpu = time.process_time() - self._cpu0
        children = cpu_seconds(family_pids()[1:])  # a child gone before the end is not counted
        cpu += sum(t - self._children0.get(pid, 0.0) for pid, t in children.items())
        self._gc_pauses.stop()
        self._done.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self._sample_family()
        pauses = list(self._gc)
        return Resources(round(100.0 * cpu / wall, 1) if wall > 0 else 0.0, round(self._rss_peak, 1),
                         None if self._gpu_peak is None else round(self._gpu_peak, 1), self._processes,
                         len(pauses), round(1000.0 * sum(pauses), 3), round(1000.0 * max(pauses, default=0.0), 3))

    def _sample_family(self) -> None:
        pids = family_pids()
        self._processes = max(self._processes, len(pids))
        self._rss_peak = max(self._rss_peak, rss_mib(pids))

    def _sample(self) -> None:
        next_gpu = time.monotonic() + self._gpu.interval_s
        while not self._done.wait(RSS_INTERVAL_S):
            self._sample_family()
            if self._gpu.available and time.monotonic() >= next_gpu:
                next_gpu += self._gpu.interval_s
                used = self._gpu.read()
                if used is not None:
                    self._gpu_peak = used if self._gpu_peak is None else max(self._gpu_peak, used)
