"""What every benchmark script needs before its libraries load. Imports
nothing heavy: the scripts call `threads_from_argv` before NumPy and
centroid are imported, because rayon's global pool is sized when the
extension loads."""

from __future__ import annotations

import platform
import sys


def threads_from_argv(default: int = 2) -> str:
    """The value of `--threads N` / `--threads=N` on the command line (the
    scripts' own parsers read it again later), else `default`."""
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return str(default)


def processor_model() -> str:
    """The "model name" of the first processor in /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
