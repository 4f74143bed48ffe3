"""Process-wide allocator settings for long video runs (called by the command-line tool only)."""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

#: glibc's largest allowed mmap threshold on 64-bit systems: blocks below it come from the heap.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    Every frame allocates and frees a few MB of arrays (decoded planes, the detector's input, network
    outputs). With glibc's defaults, blocks this large are mapped and unmapped on each use, so every
    frame's arrays are page-faulted in afresh: measured on a 1280x720 clip on this project's 2-core
    machine, 440k page faults and 31-33 ms CPU per frame, against 70k and 25-29 ms with these
    settings. The price: the process keeps its peak heap until it exits, which for a command-line
    run is its peak anyway. Since the detectors share one onnxruntime session
    (``detect.base.onnx_session``), the defaults fault about half as often as they did (~200 per
    720p frame against ~405) and these settings gain little more there (~195; tests/test_memory.py).
    A library must not change its host's allocator, so only the CLI calls
    this. Returns False where the C library is not glibc (nothing changed).
    """
    try:
        # The symbols already loaded into this process (libc among them), not ctypes.util.find_library:
        # that runs ldconfig in a subprocess on every start (~6 ms).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    applied = all(
        mallopt(param, value)
        for param, value in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (M_TRIM_THRESHOLD, 2**30), (M_TOP_PAD, 64 * 1024 * 1024))
    )
    log.debug("malloc keeps freed memory: %s", applied)
    return applied
