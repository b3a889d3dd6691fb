"""storage.row_keys.has_repeats remembers the last batches it found without repeats (the poller and the
store writer check the same frame's batches): a remembered answer is only ever "no repeats", and only for
the very object checked; a batch with repeats is found so every time, whatever was checked between."""

from __future__ import annotations

import random

from storage.row_keys import first_rows, has_repeats
from tests.core.test_row_repeats import hist_rows


def test_remembered_batches_never_hide_repeats() -> None:
    rng = random.Random(7)
    batches = [hist_rows(rng, rng.randrange(2, 12)) for _ in range(60)]
    truth = []
    for batch in batches:  # an independent answer: the rows' keys as Python tuples
        cols = batch.to_pydict()
        keys = list(zip(cols["endpoint"], cols["metric"], cols["le"], cols["ts"], strict=True))
        truth.append(len(set(keys)) < len(keys))
    assert any(truth) and not all(truth)
    for _ in range(3):  # checked again and again, interleaved, as frames pass poller then writer
        for batch, repeated in zip(batches, truth, strict=True):
            assert has_repeats("serving_hist", batch) == repeated
            kept, dropped = first_rows("serving_hist", batch)
            assert (dropped > 0) == repeated and kept.num_rows == batch.num_rows - dropped
    # an equal batch that is another object is checked afresh
    twin = batches[truth.index(True)]
    copy = twin.slice(0)
    assert copy is not twin and has_repeats("serving_hist", copy)
