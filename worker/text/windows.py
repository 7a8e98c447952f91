"""Long passages as windows (API.md section 6): where each window of a passage's own tokens starts and ends.

With room R for passage tokens beside the query, a passage of more than R tokens is cut into windows of R
tokens starting every R - O tokens (O = min(overlap, R // 2)) until a window reaches the passage's end or N
windows are made. A passage that fits gets one window, itself. With END the tokens after the N-th window
are dropped; with NONE a passage that needs more than N windows is refused, naming it. Whole-array
arithmetic: no loop over passages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.errors import ErrorType, RerankError


@dataclass(frozen=True, slots=True)
class Windows:
    """The windows of one request's passages, passage after passage."""

    owners: np.ndarray  # [windows] the passage each window is of, ascending
    offsets: np.ndarray  # [windows] where it starts among its passage's tokens
    lengths: np.ndarray  # [windows] how many of them it holds (at most R)

    def __len__(self) -> int:
        return len(self.owners)

    @property
    def firsts(self) -> np.ndarray:
        """Index of each passage's first window (every passage has one)."""
        return np.flatnonzero(np.r_[True, self.owners[1:] != self.owners[:-1]])


def plan_windows(
    lengths: np.ndarray, *, room: int, max_windows: int, overlap: int, truncate: str, max_total: int | None = None
) -> Windows:
    """The windows of passages of these token lengths, R = `room` (> 0) tokens each, at most `max_windows` a passage
    and `max_total` (RERANK_MAX_WINDOWS_PER_REQUEST) in all: counted from the lengths, before any pair is built."""
    lengths = np.asarray(lengths, dtype=np.int64)
    step = room - min(overlap, room // 2)
    needed = np.where(lengths > room, 1 + -(-(lengths - room) // step), 1)
    if truncate == "NONE" and (needed > max_windows).any():
        index = int(np.argmax(needed > max_windows))
        raise too_many_windows(index=index, needed=int(needed[index]), room=room, max_windows=max_windows)
    count = np.minimum(needed, max_windows)
    if max_total is not None and int(count.sum()) > max_total:
        raise too_many_request_windows(int(count.sum()), passages=len(lengths), max_windows=max_windows, limit=max_total)
    owners = np.repeat(np.arange(len(lengths)), count)
    number = np.arange(len(owners)) - np.repeat(np.cumsum(count) - count, count)  # the window's place in its passage
    offsets = number * step
    return Windows(owners, offsets, np.minimum(room, lengths[owners] - offsets))


def too_many_windows(*, index: int, needed: int, room: int, max_windows: int) -> RerankError:
    """The NONE error for passage `index`, which needs more windows than `max_chunks_per_passage` allows."""
    return RerankError(
        ErrorType.VALIDATION,
        f"passage {index}: it needs {needed} windows of up to {room} tokens beside the query, more than "
        f"max_chunks_per_passage={max_windows}; send truncate=END to score its first {max_windows} windows, or "
        "allow more windows",
    )


def too_many_request_windows(needed: int, *, passages: int, max_windows: int, limit: int) -> RerankError:
    """The 413 for a request whose passages need more windows in all than a worker scores for one request."""
    return RerankError(
        ErrorType.TOO_LARGE,
        f"the request needs {needed} windows ({passages} passages, up to {max_windows} windows each); a worker "
        f"scores at most {limit} per request (RERANK_MAX_WINDOWS_PER_REQUEST): allow fewer windows or send fewer "
        "passages",
    )


def best_of_windows(logits: np.ndarray, token_counts: np.ndarray, windows: Windows) -> tuple[np.ndarray, np.ndarray]:
    """Each passage's logit (its best window's: max-p) and its token count (all its windows' pairs together)."""
    firsts = windows.firsts
    return np.maximum.reduceat(logits, firsts), np.add.reduceat(token_counts, firsts)
