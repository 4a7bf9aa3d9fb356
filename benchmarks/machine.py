"""Facts about the machine a benchmark runs on, printed beside its figures: the CPU and its flags, the load
average, and process memory (RSS, current and peak). Standard library only, so every benchmark can import it."""

from __future__ import annotations

import gc
import os
import platform
import resource
from pathlib import Path

#: the CPU features that decide which kernels run
WANTED_FLAGS = (
    "avx2",
    "fma",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512_bf16",
    "avx512_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> str:
    """Those of :data:`WANTED_FLAGS` this CPU has, space-separated ("" when unknown)."""
    flags = next((line.split(":", 1)[1].split() for line in _cpuinfo() if line.startswith("flags")), [])
    return " ".join(flag for flag in WANTED_FLAGS if flag in flags)


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def load_average() -> tuple[float, float, float]:
    """The 1-, 5- and 15-minute load averages, rounded to 2 decimals."""
    one, five, fifteen = (round(x, 2) for x in os.getloadavg())
    return one, five, fifteen


def load_text() -> str:
    """The load averages as ``"1.23 0.98 0.50"``."""
    return " ".join(f"{x:.2f}" for x in load_average())


def rss_mb(pid: int | str = "self", field: str = "VmRSS") -> float:
    """Resident memory of process ``pid`` in MB: ``VmRSS`` (now) or ``VmHWM`` (peak); for this process without
    ``/proc``, the peak from ``getrusage``."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    if pid == "self":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (``VmHWM``; Linux >= 4.0); whether that worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc), so the next measurement's peak is its own."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
