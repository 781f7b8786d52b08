"""Memory for templates that should never reach the disk.

An anonymous mapping marked ``MADV_DONTDUMP`` is left out of core dumps, and
``mlock`` keeps it out of swap where the process may lock memory (the systemd
unit grants it; a desktop user's default limit may be too small, in which case
the buffer still works and :attr:`LockedBuffer.locked` says it is not locked).
The firmware also turns swap and core dumps off; this is the second layer.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import mmap
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@functools.cache
def c_library() -> Any:
    """The C library, through the running program's own symbols (``find_library``
    would start ``ldconfig`` in a subprocess to look for it)."""
    return ctypes.CDLL(None, use_errno=True)


class LockedBuffer:
    """A zero-filled, page-aligned anonymous buffer, wiped before it is unmapped."""

    def __init__(self, nbytes: int) -> None:
        self.size = max(int(nbytes), 1)
        self._map = mmap.mmap(-1, self.size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.dump_excluded = False
        if hasattr(mmap, "MADV_DONTDUMP"):
            self._map.madvise(mmap.MADV_DONTDUMP)
            self.dump_excluded = True
        self._address = np.frombuffer(self._map, np.uint8).ctypes.data
        self.locked = c_library().mlock(ctypes.c_void_p(self._address), self.size) == 0
        if not self.locked:
            log.info(
                "could not lock %d bytes of template memory out of swap (RLIMIT_MEMLOCK); "
                "rely on swap being off",
                self.size,
            )

    def array(self, shape: tuple[int, ...], dtype: type[np.generic]) -> np.ndarray[Any, Any]:
        """A writable numpy view of the start of the buffer."""
        count = int(np.prod(shape))
        return np.frombuffer(self._map, dtype=dtype, count=count).reshape(shape)

    def wipe(self) -> None:
        ctypes.memset(ctypes.c_void_p(self._address), 0, self.size)

    def close(self) -> None:
        """Wipe, unlock and unmap. Views obtained from :meth:`array` must be dropped first."""
        if self._map.closed:
            return
        self.wipe()
        if self.locked:
            c_library().munlock(ctypes.c_void_p(self._address), self.size)
        try:
            self._map.close()
        except BufferError:
            log.debug("template buffer still referenced; it stays mapped (already wiped)")
