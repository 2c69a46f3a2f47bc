"""Prefix-block hashes of replayed prompts, stored ragged (one flat int64 array and row offsets).

A Mooncake trace gives every request ``hash_ids``: one integer per 512-token block of its prompt, equal
for two requests exactly when their prompts agree up to the end of that block (a chained hash: in the
published conversation trace every id sits at one position only and always follows the same id). The
paged engine's prefix cache matches a request's leading hashes against what an instance holds.

Why ragged: a 12 k-request trace holds ~290 k hashes, and a Python ``list`` of ``list`` would cost about
40 bytes per hash plus ~60 per row, and pickle slowly into sweep workers. Here a hash costs 8 bytes and a
row 8 bytes of offset; reordering or windowing the requests is one numpy gather, and only the dispatcher
turns one row into a ``tuple`` of Python ints, when it creates that request's
:class:`~sim.engine.request.Request`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

#: Prompt tokens covered by one Mooncake hash (the trace's block size).
MOONCAKE_BLOCK_TOKENS = 512


@dataclass(frozen=True, eq=False)
class PrefixHashes:
    """Row ``i``'s hashes are ``values[offsets[i]:offsets[i + 1]]``, in prompt order (block 0 first).

    Attributes:
        values: (total,) int64, every hash of every row, row after row; hashes are >= 0.
        offsets: (n + 1,) int64, non-decreasing, ``offsets[0] == 0`` and ``offsets[-1] == total``.
        block_tokens: prompt tokens per hashed block (512 for Mooncake).
    """

    values: NDArray[np.int64]
    offsets: NDArray[np.int64]
    block_tokens: int = MOONCAKE_BLOCK_TOKENS

    def __post_init__(self) -> None:
        v, o = self.values, self.offsets
        if v.ndim != 1 or o.ndim != 1 or len(o) < 1:
            raise ValueError(f"PrefixHashes: values {v.shape} and offsets {o.shape} must be 1-D, offsets non-empty")
        if v.dtype != np.int64 or o.dtype != np.int64:
            raise ValueError(f"PrefixHashes: values and offsets must be int64, got {v.dtype} and {o.dtype}")
        if o[0] != 0 or o[-1] != len(v) or np.any(np.diff(o) < 0):
            raise ValueError("PrefixHashes: offsets must start at 0, be non-decreasing and end at len(values)")
        if len(v) and v.min() < 0:
            raise ValueError("PrefixHashes: hashes must be >= 0")
        if self.block_tokens < 1:
            raise ValueError(f"PrefixHashes: block_tokens must be >= 1, got {self.block_tokens}")

    @classmethod
    def from_lengths(cls, values: NDArray[np.int64], lengths: NDArray[np.int64],
                     block_tokens: int = MOONCAKE_BLOCK_TOKENS) -> PrefixHashes:
        """From the flat hashes and each row's hash count (what a loader collects line by line)."""
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(np.asarray(values, dtype=np.int64), offsets, block_tokens)

    @property
    def n(self) -> int:
        """Number of rows (requests)."""
        return len(self.offsets) - 1

    @property
    def lengths(self) -> NDArray[np.int64]:
        """Hash count of every row."""
        return np.diff(self.offsets)

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays (8 bytes per hash + 8 per row)."""
        return int(self.values.nbytes + self.offsets.nbytes)

    def row(self, i: int) -> tuple[int, ...]:
        """Row ``i`` as an immutable tuple of Python ints (what ``Request.prefix`` holds)."""
        return tuple(self.values[self.offsets[i] : self.offsets[i + 1]].tolist())

    def take(self, index: NDArray[np.integer] | NDArray[np.bool_]) -> PrefixHashes:
        """The rows ``index`` picks (integer indices, any order and repeats; or a boolean mask), each row
        keeping its own hashes: reordering or resampling requests never separates a prompt from its hashes.

        Vectorised: the gathered positions are ``arange(total) - (new row start - old row start)``.
        """
        idx = np.asarray(index)
        rows = np.flatnonzero(idx) if idx.dtype == np.bool_ else idx.astype(np.int64, copy=False)
        if rows.size and (rows.min() < -self.n or rows.max() >= self.n):
            raise IndexError(f"PrefixHashes.take: row index out of range for {self.n} rows")
        rows = rows % max(self.n, 1)
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        new = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=new[1:])
        shift = np.repeat(starts - new[:-1], lengths)
        values = self.values[np.arange(new[-1], dtype=np.int64) + shift]
        return PrefixHashes(values, new, self.block_tokens)

    def slice(self, lo: int, hi: int) -> PrefixHashes:
        """Rows ``lo .. hi-1`` (a contiguous window: copies, no gather)."""
        lo = min(max(0, lo), self.n)
        hi = min(max(lo, hi), self.n)
        a, b = int(self.offsets[lo]), int(self.offsets[hi])
        return PrefixHashes(self.values[a:b].copy(), self.offsets[lo : hi + 1] - a, self.block_tokens)
