"""The one CUDA runtime loader, error type and result check of the package (cuda-python's runtime
bindings: `cuda.bindings.runtime`, `cuda.cudart` on older cuda-python). No pycuda.

Imported lazily everywhere: the CPU install never loads cuda-python. Wrappers that must run under
the TensorRT mock (tests/support/mock_tensorrt.py) take the runtime module as an argument and pass
it to `check`, which then also asks it for the error's text.
"""
from __future__ import annotations

from typing import Any


class CudaError(RuntimeError):
    """A CUDA call failed; the message is one line naming the call and the error."""


class CudaRuntimeMissing(ImportError, RuntimeError):
    """cuda-python is not installed. Both an ImportError and a RuntimeError, so callers that catch
    either (a missing package, a failed GPU setup) see it."""


def load_cuda_runtime(missing: str = "cuda-python is not installed (install the [gpu] extra)") -> Any:
    """The cuda-python runtime module; CudaRuntimeMissing(`missing`) when it is not installed."""
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as runtime  # older cuda-python
        except ImportError:
            raise CudaRuntimeMissing(missing) from None
    return runtime


def loaded_cuda_runtimes(maps: str = "/proc/self/maps") -> list[str]:
    """Paths of the CUDA runtime libraries (libcudart.so*) mapped into this process: ONNX Runtime's
    CUDA provider brings its own, which cuda-python's bindings do not share. Empty off Linux."""
    try:
        with open(maps, encoding="utf-8", errors="replace") as lines:
            paths = {line.split(None, 5)[-1].strip() for line in lines if "libcudart.so" in line}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


def clear_last_errors() -> None:
    """Reset the calling thread's last CUDA error in every CUDA runtime of the process. A library
    that checks cudaGetLastError() after its kernels (ONNX Runtime does) would otherwise fail its
    next call with an error that an earlier, handled one left behind (a refused graph capture)."""
    import ctypes

    for path in loaded_cuda_runtimes():
        try:
            ctypes.CDLL(path).cudaGetLastError()  # the library already mapped: same instance
        except (OSError, AttributeError):
            pass
    try:
        load_cuda_runtime().cudaGetLastError()
    except Exception:  # noqa: BLE001 - no cuda-python: nothing more to clear
        pass


def check(result: Any, call: str, runtime: Any = None) -> Any:
    """Unpack a cuda-python (err, *values) tuple (runtime or driver API); raise CudaError unless err
    is 0 (cudaSuccess / CUDA_SUCCESS); return the value, the values, or None. With `runtime`, the
    message adds cudaGetErrorString's text."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise CudaError(f"{call} failed: {getattr(err, 'name', err)}{_error_text(runtime, err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _error_text(runtime: Any, err: Any) -> str:
    if runtime is None:
        return ""
    try:
        text = runtime.cudaGetErrorString(err)[1]
        text = text.decode() if isinstance(text, bytes) else str(text)
    except Exception:  # noqa: BLE001 - the error name alone still says enough
        return ""
    return f" ({text})" if text else ""


def visible_gpu_count() -> int:
    """CUDA devices this process can see; 0 without cuda-python, a driver or a GPU."""
    try:
        runtime = load_cuda_runtime()
        return int(check(runtime.cudaGetDeviceCount(), "cudaGetDeviceCount"))
    except (CudaRuntimeMissing, CudaError, OSError):
        return 0
