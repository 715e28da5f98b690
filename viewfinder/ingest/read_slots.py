"""Buffers the GPU path's reader processes read JPEG files into, shared with the main process and
reused batch after batch.

A fresh shared-memory buffer for every reader batch costs twice: the reader faults in every page
it writes and the main process maps the buffer anew and faults it in again during the nvJPEG
call. Slots in one anonymous shared mapping made before the readers are forked are mapped in
every process from the start, their pages are faulted in once for the whole run, and a batch
passes between the processes as a slot number, not as a handle to map. On a lent H200 host
(benchmarks/results/gpu_12mp_h200_read_slots.txt): a reader's read + header + hash of a 12 MP
photo 2.53 ms into fresh shared memory, 1.21 into a reused slot (1.36 into ordinary memory);
nvJPEG 448-510 phone photos/s from fresh shared memory, 514 from reused slots. Page-locking the
slots made nvJPEG alone faster still (560-577) but not the pipeline, whether all at the start
(which delayed it by a second) or each when first given back
(gpu_12mp_h200_read_slots_locked.txt, gpu_12mp_h200_read_slots_lazy_locked.txt), so they are
not locked."""

from __future__ import annotations

import mmap
import multiprocessing


class ReadSlots:
    """`count` buffers of `size` bytes each. A reader takes a free one (waiting for one if none
    is), the main process gives it back when the decoder has read the bytes. Must be made before
    the reader processes are forked (they inherit the mapping and the queue of free slots). The
    pages a run has written stay allocated until it ends (at most 33 slots of 128 MB, 4.2 GB, with
    14 readers: about what the batches in flight held before, at their peak). OSError when the
    system refuses the mapping."""

    def __init__(self, count: int, size: int) -> None:
        import torch

        self.count, self.size = count, size
        # MAP_SHARED | MAP_ANONYMOUS: parent and forked children share the pages, which are
        # allocated only when first written
        self._memory = mmap.mmap(-1, max(1, count * size))
        self._bytes = torch.frombuffer(self._memory, dtype=torch.uint8)
        self._free = multiprocessing.get_context("fork").SimpleQueue()
        for k in range(count):
            self._free.put(k)

    def take(self) -> int:
        """A free slot's number (in a reader)."""
        return self._free.get()

    def give_back(self, slot: int) -> None:
        """`slot` is free again (in the main process, once its bytes are no longer needed)."""
        self._free.put(slot)

    def view(self, slot: int, nbytes: int):
        """The first `nbytes` of `slot` as a uint8 tensor (no copy)."""
        if nbytes > self.size:
            raise ValueError(f"{nbytes} bytes do not fit a read slot of {self.size}")
        return self._bytes[slot * self.size : slot * self.size + nbytes]
