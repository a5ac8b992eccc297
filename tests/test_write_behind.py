"""`write_behind`: the consumer's thread sees every item, in order; its failures reach the
caller; leaving the block early consumes no more."""

import threading
import time

import pytest

from pipeline.data.write_behind import write_behind


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_every_item_is_consumed_in_order_before_the_block_ends(depth):
    seen, threads = [], set()

    def consume(x):
        time.sleep(0.001 * (x % 3))  # a slow consumer: the queue fills
        threads.add(threading.current_thread().name)
        seen.append(x)

    with write_behind(consume, depth) as put:
        for x in range(25):
            put(x)
    assert seen == list(range(25))
    assert threads == ({"MainThread"} if depth == 0 else {"write-behind"})


@pytest.mark.parametrize("depth", [0, 2])
def test_a_consumer_failure_is_raised_in_the_caller_and_stops_the_consuming(depth):
    seen = []

    def consume(x):
        if x == 4:
            raise ValueError("bad item 4")
        seen.append(x)

    with pytest.raises(ValueError, match="bad item 4"):
        with write_behind(consume, depth) as put:
            for x in range(50):
                put(x)
                time.sleep(0.001)
    assert seen == [0, 1, 2, 3]


def test_a_failure_after_the_last_put_is_raised_on_leaving_the_block():
    def consume(x):
        time.sleep(0.02)
        raise RuntimeError(f"disk full at {x}")

    with pytest.raises(RuntimeError, match="disk full at 0"):
        with write_behind(consume, 4) as put:
            put(0)


def test_a_failure_in_the_block_leaves_the_waiting_items_unconsumed():
    seen, in_hand, release = [], threading.Event(), threading.Event()

    def consume(x):
        in_hand.set()
        release.wait(5)
        seen.append(x)

    with pytest.raises(KeyError):
        with write_behind(consume, 8) as put:
            for x in range(6):
                put(x)
            in_hand.wait(5)
            threading.Timer(0.2, release.set).start()  # item 0 in hand till then; 1-5 wait
            raise KeyError("interrupted")
    assert seen == [0]  # nothing after the item in hand
    assert not [t for t in threading.enumerate() if t.name == "write-behind"]
