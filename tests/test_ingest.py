"""Ingest: a file is queued only after all of it checks out; bad files name their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamics_bridge.errors import InputError
from dynamics_bridge.ingest import detect_format, ingest_file, iter_files
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import BankgirotSettings
from tests.sources import test_autogiro, test_bgmax


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, data in {"ag.txt": test_autogiro.GOOD, "bg.txt": test_bgmax.GOOD}.items():
        (tmp_path / name).write_bytes(data)
        out[name] = tmp_path / name
    return out


def test_formats_are_detected_from_content(files) -> None:
    assert detect_format(files["bg.txt"].read_bytes()[:200]) == "bgmax"
    assert detect_format(files["ag.txt"].read_bytes()[:200]) == "autogiro"
    assert detect_format(b"Exempelfil\r\n\r\n01BGMAX") == "bgmax"


def test_a_good_file_is_queued_with_totals_per_kind_and_currency(files) -> None:
    queue = InMemoryQueue()
    report = ingest_file(files["bg.txt"], queue=queue)
    assert report.format == "bgmax"
    assert report.events == 4
    assert len(queue.peek_events()) == 4
    assert report.to_json()["by_kind"]["payment.succeeded"]["SEK"] == {
        "count": 3,
        "sum_minor": 60000,
    }


def test_nothing_from_a_file_with_a_wrong_total_is_queued(files, tmp_path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(
        files["bg.txt"].read_bytes().replace(f"{55000:018d}".encode(), f"{55100:018d}".encode())
    )
    queue = InMemoryQueue()
    with pytest.raises(InputError) as caught:
        ingest_file(bad, queue=queue)
    assert caught.value.location == f"{bad}:8"
    assert len(queue) == 0


def test_large_files_are_sent_in_batches(tmp_path) -> None:
    from dynamics_bridge.sources.bankgirot_writer import BgmaxPayment, bgmax_lines
    from dynamics_bridge.sources.ocr import make_reference

    path = tmp_path / "big.txt"
    with path.open("wb") as fh:
        fh.writelines(
            bgmax_lines(
                BgmaxPayment(make_reference(str(100000 + i)), 100, f"{i:012d}") for i in range(2500)
            )
        )
    queue = InMemoryQueue()
    report = ingest_file(
        path, queue=queue, settings=BankgirotSettings(events_per_message_batch=1000)
    )
    assert report.events == 2500
    assert len(queue) >= 3
    assert len({e["event_id"] for e in queue.peek_events()}) == 2500


def test_directories_are_walked_and_missing_paths_named(files, tmp_path) -> None:
    assert sorted(p.name for p in iter_files([tmp_path])) == ["ag.txt", "bg.txt"]
    with pytest.raises(InputError, match="no such file"):
        list(iter_files([tmp_path / "missing.txt"]))
