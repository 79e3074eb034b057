"""glibc heap settings for a process that allocates and frees large buffers from many threads.

The text engine keeps a llama.cpp state of tens of MB per session and replaces it every turn, on whichever
executor thread served the turn. By default glibc gives threads their own heap arenas and raises its mmap
threshold as big blocks are freed, so those buffers end up on the arenas' heaps, fragmented: the resident memory
climbed ~200 MB an hour over a conversation. Big buffers mapped (and unmapped when freed) and two arenas keep it
flat (docs/benchmarks.md, "Soak").
"""

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def map_large_buffers(threshold_bytes: int = 1 << 20, arenas: int = 2) -> None:
    """Call before threads start. No-op where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "mallopt"):
        log.info("not glibc: heap settings left as they are")
        return
    if not (libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes) and libc.mallopt(_M_ARENA_MAX, arenas)):
        log.warning("mallopt refused the heap settings")
