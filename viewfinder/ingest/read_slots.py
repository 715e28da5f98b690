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
slots made nvJPEG alone faster still (560-577) but not the pipeline, and locking 4 GB of slots
delayed its start by a second, so they are not locked."""

from __future__ import annotations

import mmap
import multiprocessing
import queue
import threading


class ReadSlots:
    """`count` buffers of at least `size` bytes each. A reader takes a free one (waiting for one
    if none is), the main process gives it back when the decoder has read the bytes. Must be made
    before the reader processes are forked (they inherit the mapping and the queue of free
    slots). With `lock_pages`, a slot given back for the first time is page-locked for CUDA by a
    thread of its own before a reader gets it again."""

    def __init__(self, count: int, size: int, lock_pages: bool = False) -> None:
        import torch

        # whole pages, so that no two slots share one (a page is locked once)
        self.count, self.size = count, -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        # MAP_SHARED | MAP_ANONYMOUS: parent and forked children share the pages, which are
        # allocated only when first written
        self._memory = mmap.mmap(-1, max(1, count * self.size))
        self._bytes = torch.frombuffer(self._memory, dtype=torch.uint8)
        self._free = multiprocessing.get_context("fork").SimpleQueue()
        for k in range(count):
            self._free.put(k)
        self._lock_pages = lock_pages
        self._seen: set[int] = set()  # slots the locking thread has had (locked or refused)
        self._locked: set[int] = set()
        self._to_lock: queue.SimpleQueue = queue.SimpleQueue()
        self._locker: threading.Thread | None = None

    def take(self) -> int:
        """A free slot's number (in a reader)."""
        return self._free.get()

    def give_back(self, slot: int) -> None:
        """`slot` is free again (in the main process, once its bytes are no longer needed)."""
        if not self._lock_pages or slot in self._seen:
            self._free.put(slot)
            return
        if self._locker is None:  # started here, after the readers are forked
            self._locker = threading.Thread(target=self._lock, name="read-slots-lock", daemon=True)
            self._locker.start()
        self._to_lock.put(slot)

    def _lock(self) -> None:
        import torch

        cudart = torch.cuda.cudart()
        while (slot := self._to_lock.get()) is not None:
            if int(cudart.cudaHostRegister(self._address(slot), self.size, 0)) == 0:
                self._locked.add(slot)
            self._seen.add(slot)
            self._free.put(slot)

    def close(self) -> None:
        """Unlock the slots' pages (when the run is over)."""
        import torch

        if self._locker is not None:
            self._to_lock.put(None)
            self._locker.join()
            self._locker = None
        for slot in self._locked:
            torch.cuda.cudart().cudaHostUnregister(self._address(slot))
        self._locked.clear()

    def _address(self, slot: int) -> int:
        return self._bytes.data_ptr() + slot * self.size

    def view(self, slot: int, nbytes: int):
        """The first `nbytes` of `slot` as a uint8 tensor (no copy)."""
        if nbytes > self.size:
            raise ValueError(f"{nbytes} bytes do not fit a read slot of {self.size}")
        return self._bytes[slot * self.size : slot * self.size + nbytes]
