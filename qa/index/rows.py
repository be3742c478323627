"""Vector files a build writes as it goes and reads back by blocks.

A generation's vectors (``vectors.npy``, ``sentences.npy``, the second encoder's) are plain
``.npy`` files of float32 rows. A build appends rows to them as the encoders produce them
(:class:`RowWriter`) and reads them back a block at a time (:class:`Rows`) to write the
vector indexes and hubness: it never holds a corpus's vectors in memory, only a window's.

Reads go through ``pread`` into fresh arrays rather than ``mmap``: a mapped file's pages stay
in the process's resident set once touched, so a build that scanned a memory-mapped
generation looked (to the kernel's accounting and to ``qa bench``) as large as its files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

_DTYPE = np.dtype("<f4")
# Rows per block when a whole file is streamed: 8 MiB of 512-d rows, small against what a
# build holds anyway and large enough that the reads are sequential.
BLOCK = 4096


def _header(n: int, dim: int) -> bytes:
    """The header ``np.save`` writes for an (n, dim) float32 array (format 1.0)."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(_DTYPE), "fortran_order": False,
              "shape": (n, dim)})
    return buf.getvalue()


class RowWriter:
    """float32 rows of width ``dim`` appended to a new ``.npy`` file.

    The header is written first with room for any row count (it is padded to 64 bytes like
    numpy's own, and the count's digits fit in that padding) and rewritten with the real
    count by :meth:`close`, so the file is byte for byte what ``np.save`` of the whole array
    would have written, without the whole array ever being in memory."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path, self.dim, self.count = path, dim, 0
        self._head = len(_header(0, dim))
        if len(_header(2**62, dim)) != self._head:  # pragma: no cover - numpy's padding
            raise RuntimeError("the .npy header does not leave room for the row count")
        self._fh = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._fh.write(_header(0, dim))

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=_DTYPE)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"expected (n, {self.dim}) rows, got {rows.shape}")
        if rows.size:
            self._fh.write(rows.data.cast("B"))
            self.count += len(rows)

    def close(self) -> Rows:
        """Finish the file (the caller fsyncs the generation) and open it for reading."""
        if not self._fh.closed:
            self._fh.seek(0)
            self._fh.write(_header(self.count, self.dim))
            self._fh.close()
        return Rows(self.path)

    def abort(self) -> None:
        self._fh.close()


class Rows:
    """An (n, dim) float32 ``.npy`` file read by slices: ``rows[a:b]``, ``rows[[i, j]]``
    (read as the span from the smallest to the largest, then picked) and :meth:`blocks`.
    Enough of an array for hubness (qa.index.hubness) and for copying a previous
    generation's rows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as fh:
            read = np.lib.format.read_array_header_1_0 \
                if np.lib.format.read_magic(fh) == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            self._offset = fh.tell()
        if dtype != _DTYPE or fortran or len(shape) != 2:
            raise ValueError(f"{path.name}: not an (n, dim) float32 array")
        self.n, self.dim = int(shape[0]), int(shape[1])
        self.shape = (self.n, self.dim)

    def __len__(self) -> int:
        return self.n

    def _read(self, lo: int, hi: int) -> np.ndarray:
        out = np.empty((max(0, hi - lo), self.dim), dtype=_DTYPE)
        if not out.size:
            return out
        view, at = out.data.cast("B"), self._offset + lo * self.dim * _DTYPE.itemsize
        with open(self.path, "rb") as fh:
            while len(view):  # a read may stop short (2 GiB at most per call on Linux)
                got = os.preadv(fh.fileno(), [view], at)
                if got <= 0:
                    raise ValueError(f"{self.path.name}: the file ends before row {hi}")
                view, at = view[got:], at + got
        return out

    def __getitem__(self, key: slice | np.ndarray | list[int]) -> np.ndarray:
        if isinstance(key, slice):
            lo, hi, step = key.indices(self.n)
            if step != 1:
                raise ValueError("Rows slices have no step")
            return self._read(lo, hi)
        idx = np.asarray(key, dtype=np.int64).reshape(-1)
        if not len(idx):
            return np.zeros((0, self.dim), _DTYPE)
        if idx.min() < 0 or idx.max() >= self.n:
            raise IndexError(f"row out of range 0..{self.n - 1}")
        lo = int(idx.min())
        return self._read(lo, int(idx.max()) + 1)[idx - lo]

    def blocks(self, size: int | None = None) -> Iterator[np.ndarray]:
        """The rows in order, ``size`` (:data:`BLOCK`) at a time."""
        size = size or BLOCK
        for lo in range(0, self.n, size):
            yield self._read(lo, min(self.n, lo + size))
