"""Recording the live rack: the store sink shared by `monitor`, `monitor demo` and `monitor collect`."""

from pathlib import Path

import pytest

from monitor.errors import UserError
from monitor.recording import Recording, StoreBusy
from storage.frame import Frame, batch_from_columns
from storage.head import Head
from storage.reader import StoreReader
from tests.store_checks import assert_no_duplicate_rows


def gpu_frame(ts_ms: int) -> Frame:
    batch = batch_from_columns(
        "gpu",
        {
            "ts": [ts_ms] * 4,
            "gpu": [0, 1, 2, 3],
            "uuid": [f"GPU-{g}" for g in range(4)],
            "tray": [1] * 4,
            "state": [0] * 4,
        },
    )
    return Frame(ts_ms, {"gpu": batch})


def test_a_recording_seals_what_the_poller_hands_it(tmp_path: Path):
    head = Head()
    with Recording(tmp_path / "store", head, flush_s=1.0) as recording:
        for tick in range(5):
            frame = gpu_frame(1_700_000_000_000 + tick * 1000)
            head.append(frame)
            recording.sink(frame)
        assert [type(s).__name__ for s in recording.sources] == ["HostSampler", "RecordingWatch"]
    with StoreReader(tmp_path / "store") as reader:
        assert reader.sql("SELECT count(*) AS n FROM gpu").column("n")[0].as_py() == 20
    assert_no_duplicate_rows(tmp_path / "store", head)


def test_a_store_another_process_records_is_busy_not_an_error(tmp_path: Path):
    with Recording(tmp_path / "store", Head()), pytest.raises(StoreBusy) as busy:
        Recording(tmp_path / "store", Head())
    assert "pid" in str(busy.value)


def test_a_directory_that_is_not_a_store_is_one_clear_error(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("not a store")
    with pytest.raises(UserError) as err:
        Recording(tmp_path, Head())
    assert not isinstance(err.value, StoreBusy)
    assert "store" in str(err.value)
