"""Items handed to a consumer on a background thread, a bounded number behind their making:
the writing half of `read_ahead`.

extract_proposals on a GPU: the host turns each image's run lengths into pycocotools'
strings and parquet rows (about 6 CPU-ms an image, benchmarks/bench_heavy_stages.py's
"host ms"). On the stage's one thread that work alternated with queuing the net and
waiting for its masks, capping the stage near 166 images/s whatever the GPU (issue 31);
on a thread of its own it runs while the main thread waits for the device (a CUDA event
wait releases the GIL, as numpy's and pyarrow's work largely does). The consumer sees the
items in the order they were put, so the bytes written are the same.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

Item = TypeVar("Item")

_END = object()


@contextmanager
def write_behind(consume: Callable[[Item], object], depth: int
                 ) -> Iterator[Callable[[Item], None]]:
    """A `put(item)` that calls `consume(item)` on one thread, in order, with up to `depth`
    items waiting; depth 0: in the caller's thread, at once. Leaving the block waits for
    every item put. An exception raised by `consume` is raised in the caller, at the next
    `put` or on leaving the block, and the items after it are not consumed; an exception
    in the block stops the thread without consuming what is still waiting."""
    if depth <= 0:
        yield consume
        return
    waiting: queue.Queue = queue.Queue(maxsize=depth)
    failed: list[BaseException] = []
    stop = threading.Event()

    def work() -> None:
        while True:
            item = waiting.get()
            if item is _END or stop.is_set():
                return
            try:
                consume(item)
            except BaseException as e:  # handed to the caller at its next put or exit
                failed.append(e)
                stop.set()

    def put(item) -> None:
        while not failed:
            try:
                waiting.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise failed[0]

    writer = threading.Thread(target=work, name="write-behind", daemon=True)
    writer.start()
    try:
        yield put
    except BaseException:
        stop.set()
        raise
    finally:
        while writer.is_alive():  # the end marker, once there is room (or the thread ended)
            try:
                waiting.put(_END, timeout=0.1)
                break
            except queue.Full:
                continue
        try:
            writer.join()
        except BaseException:  # (Ctrl-C while waiting) the item in hand ends first, so
            stop.set()  # the caller's cleanup never meets a write half done
            writer.join()
            raise
    if failed:
        raise failed[0]
