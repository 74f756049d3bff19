"""Ingest: a file is queued only after all of it checks out; bad files name their line; and a
file is read only for the union's own payees (bankgiro and customer number)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dynamics_bridge_sandbox.bankgirot_writer import BgmaxPayment, bgmax_lines

from dynamics_bridge.app.ingest import detect_format, ingest_file, iter_files
from dynamics_bridge.errors import ConfigError, InputError, TransientError
from dynamics_bridge.ops.memory import InMemoryOpsStore
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import BankgirotSettings
from dynamics_bridge.sources.ocr import make_reference
from tests.fixtures.bankgirot import (
    BG,
    CUSTOMER,
    HERE,
    ag_closing,
    ag_notice,
    ag_opening,
    ag_payment,
    ag_section,
    bg_opening,
    lines,
)
from tests.fixtures.bankgirot import build as fixtures
from tests.sources import test_autogiro, test_bgmax

#: The union these tests ingest for: Bankgirot's example payee, as every fixture names.
OURS = BankgirotSettings(payee_bankgiros=[BG], customer_numbers=[CUSTOMER])
OTHER_BG = "0050501055"  # 5050-1055: a valid bankgiro number that is not the union's


def ingest(source, **options):  # type: ignore[no-untyped-def]
    """ingest_file for the union's own payees unless the test says otherwise."""
    options.setdefault("settings", OURS)
    return ingest_file(source, **options)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, data in {"ag.txt": test_autogiro.GOOD, "bg.txt": test_bgmax.GOOD}.items():
        (tmp_path / name).write_bytes(data)
        out[name] = tmp_path / name
    return out


def bad_bgmax(tmp_path: Path) -> Path:
    """GOOD with its deposit (line 8) one krona off."""
    bad = tmp_path / "bad.txt"
    bad.write_bytes(test_bgmax.GOOD.replace(f"{55000:018d}".encode(), f"{55100:018d}".encode()))
    return bad


class OneWay(io.RawIOBase):
    """A stream that cannot seek, like a network body."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        chunk = self._inner.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


class TestFormats:
    def test_formats_are_detected_from_content_not_names(self, files) -> None:
        assert detect_format(files["bg.txt"].read_bytes()[:200]) == "bgmax"
        assert detect_format(files["ag.txt"].read_bytes()[:200]) == "autogiro"
        assert detect_format(b"Exempelfil\r\n\r\n01BGMAX") == "bgmax"
        assert detect_format(fixtures.bgmax_no_line_breaks()[:300]) == "bgmax"

    def test_auto_reads_every_fixture_with_the_right_parser(self) -> None:
        for path in sorted(HERE.glob("*.txt")):
            if "to_bankgirot" in path.name:
                continue  # refused, see tests/sources/test_autogiro.py
            expected = "bgmax" if path.name.startswith("bgmax") else "autogiro"
            assert ingest(path).format == expected, path

    def test_a_forced_format_is_used(self, files) -> None:
        with pytest.raises(InputError, match="not a BgMax file"):
            ingest(files["ag.txt"], format="bgmax")


class TestQueueing:
    def test_a_good_file_is_queued_with_totals_per_kind_and_currency(self, files) -> None:
        queue = InMemoryQueue()
        report = ingest(files["bg.txt"], queue=queue)
        assert (report.format, report.events, report.queued) == ("bgmax", 4, 4)
        assert len(queue.peek_events()) == 4
        assert report.to_json()["by_kind"]["payment.succeeded"]["SEK"] == {
            "count": 3,
            "sum_minor": 60000,
        }

    def test_nothing_from_a_file_with_a_wrong_total_is_queued_or_passed_on(self, tmp_path) -> None:
        bad = bad_bgmax(tmp_path)
        queue = InMemoryQueue()
        seen = []
        with pytest.raises(InputError) as caught:
            ingest(bad, queue=queue, on_event=seen.append)
        assert caught.value.location == f"{bad}:8"
        assert caught.value.field == "amount"
        assert len(queue) == 0
        assert seen == []

    def test_large_files_are_sent_in_batches(self, tmp_path) -> None:
        path = tmp_path / "big.txt"
        with path.open("wb") as fh:
            fh.writelines(
                bgmax_lines(
                    BgmaxPayment(make_reference(str(100000 + i)), 100, f"{i:012d}")
                    for i in range(2500)
                )
            )
        queue = InMemoryQueue()
        report = ingest(
            path, queue=queue, settings=OURS.model_copy(update={"events_per_message_batch": 1000})
        )
        assert (report.events, report.queued) == (2500, 2500)
        assert len(queue) >= 3
        assert len({e["event_id"] for e in queue.peek_events()}) == 2500

    def test_a_queue_failure_stops_the_file_and_says_so(self, files) -> None:
        class Down(InMemoryQueue):
            def send(self, events):  # type: ignore[no-untyped-def]
                raise TransientError("queue unavailable")

        with pytest.raises(TransientError):
            ingest(files["bg.txt"], queue=Down())

    def test_the_ocr_scheme_comes_from_the_settings(self, tmp_path) -> None:
        path = tmp_path / "bg.txt"
        path.write_bytes(
            b"".join(bgmax_lines([BgmaxPayment(make_reference("4711", "luhn_length"), 100, "1")]))
        )
        seen = []
        ingest(
            path,
            settings=OURS.model_copy(update={"ocr_scheme": "luhn_length"}),
            on_event=seen.append,
        )
        assert seen[0].member_ref.value == "4711"


class TestFailedMandateRequests:
    """Notices saying our own request failed: no event, on the report and in the log once."""

    def test_one_is_logged_once_and_listed_once_though_the_file_is_read_twice(
        self, tmp_path, caplog
    ) -> None:
        path = tmp_path / "medavi.txt"
        path.write_bytes(fixtures.mandate_notices())  # one 04/21 (payer 100003, line 5)
        queue = InMemoryQueue()
        with caplog.at_level("WARNING"):
            report = ingest(path, queue=queue)
        assert (report.events, report.queued) == (5, 5)
        warnings = [r for r in caplog.records if r.levelname == "WARNING"]
        (warning,) = warnings
        assert warning.name == "dynamics_bridge.sources.autogiro"
        assert (warning.source, warning.outcome, warning.origin, warning.reason) == (
            "autogiro",
            "mandate_request_failed",
            f"{path}:5",
            "04/21",
        )
        message = warning.getMessage()
        assert message.startswith(f"{path}:5: mandate request for payer 100003 failed (04/21 ")
        assert "Felaktigt betalarnummer" in message
        assert "needs a task" in message
        (notice,) = report.requests_failed
        assert (notice.origin, notice.payer, notice.pair) == (f"{path}:5", "100003", "04/21")
        assert report.to_json()["mandate_requests_failed"] == [f"{path}:5"]

    def test_a_dry_run_lists_and_logs_them_too(self, caplog) -> None:
        with caplog.at_level("WARNING"):
            report = ingest(io.BytesIO(fixtures.mandate_notices_old()), name="old.txt")
        assert [n.origin for n in report.requests_failed] == ["old.txt:3"]
        assert [r.origin for r in caplog.records] == ["old.txt:3"]

    def test_files_without_them_have_no_such_key(self, files) -> None:
        for path in files.values():
            report = ingest(path, queue=InMemoryQueue())
            assert report.requests_failed == []
            assert "mandate_requests_failed" not in report.to_json()

    def test_a_bad_file_logs_none_of_them(self, caplog) -> None:
        # Rejected as a whole (no TK09 closing record): nothing from it counts, these neither.
        data = lines(ag_opening("AG-MEDAVI"), ag_notice("100003", "04", "21"))
        with caplog.at_level("WARNING"), pytest.raises(InputError, match="TK09 closing record"):
            ingest(io.BytesIO(data), name="cut.txt", queue=InMemoryQueue())
        assert caplog.records == []


class TestStreams:
    def test_a_stream_is_read_like_a_file_and_named_as_told(self) -> None:
        seen = []
        report = ingest(io.BytesIO(test_bgmax.GOOD), name="blob/bg.txt", on_event=seen.append)
        assert report.events == 4
        assert seen[0].origin == "blob/bg.txt:3"

    def test_a_stream_that_cannot_seek_is_copied_first(self) -> None:
        seen = []
        report = ingest(OneWay(test_bgmax.GOOD), name="body", on_event=seen.append)
        assert (report.events, len(seen)) == (4, 4)

    def test_ids_do_not_depend_on_the_name_or_the_way_in(self, files) -> None:
        by_path, by_stream = [], []
        ingest(files["ag.txt"], on_event=by_path.append)
        ingest(OneWay(test_autogiro.GOOD), name="x", on_event=by_stream.append)
        assert [e.event_id for e in by_path] == [e.event_id for e in by_stream]

    def test_progress_is_reported_for_both_passes(self, files) -> None:
        calls: list[tuple[str, int, int | None]] = []
        ingest(files["bg.txt"], on_event=lambda e: None, on_progress=lambda *a: calls.append(a))
        size = files["bg.txt"].stat().st_size
        assert ("checking", size, size) in calls
        assert ("queueing", size, size) in calls


class TestFiles:
    def test_directories_are_walked_sorted_and_hidden_files_skipped(self, files, tmp_path) -> None:
        (tmp_path / ".hidden.txt").write_bytes(b"x")
        assert [p.name for p in iter_files([tmp_path])] == ["ag.txt", "bg.txt"]

    def test_a_missing_path_is_named(self, tmp_path) -> None:
        with pytest.raises(InputError, match="no such file") as caught:
            list(iter_files([tmp_path / "missing.txt"]))
        assert caught.value.location == str(tmp_path / "missing.txt")


class TestTheUnionsOwnPayees:
    """Payer numbers are unique per payee bankgiro only: a report for another payee would book
    onto the wrong members, so it is refused like any bad file (named place, nothing queued)."""

    def test_with_no_payee_configured_nothing_is_read(self, files) -> None:
        queue = InMemoryQueue()
        with pytest.raises(ConfigError, match="BRIDGE_BANKGIROT__PAYEE_BANKGIROS") as caught:
            ingest_file(files["bg.txt"], queue=queue)
        assert "991-2346" in str(caught.value)  # says what a value looks like
        assert len(queue) == 0

    def test_accept_any_payee_is_the_development_escape(self, files) -> None:
        anyone = BankgirotSettings(accept_any_payee=True)
        assert ingest_file(files["bg.txt"], settings=anyone).events == 4

    def test_configured_bankgiros_win_over_accept_any_payee(self, files) -> None:
        others = BankgirotSettings(payee_bankgiros=["5050-1055"], accept_any_payee=True)
        with pytest.raises(InputError, match="payee bankgiro"):
            ingest_file(files["bg.txt"], settings=others)

    def test_an_autogiro_report_for_another_payee_is_refused_at_its_opening(self, files) -> None:
        queue, seen = InMemoryQueue(), []
        others = BankgirotSettings(payee_bankgiros=["5050-1055"])
        with pytest.raises(InputError) as caught:
            ingest(files["ag.txt"], settings=others, queue=queue, on_event=seen.append)
        error = caught.value
        assert (error.location, error.field) == (f"{files['ag.txt']}:1", "payee bankgiro")
        assert "positions 71-80" in error.detail
        assert "991-2346" in error.detail  # what the file says
        assert "BRIDGE_BANKGIROT__PAYEE_BANKGIROS = 5050-1055" in error.detail  # what is set
        assert (len(queue), seen) == (0, [])

    def test_a_bgmax_section_for_another_payee_is_refused_at_its_tk05(self, files) -> None:
        others = BankgirotSettings(payee_bankgiros=["5050-1055"])
        with pytest.raises(InputError) as caught:
            ingest(files["bg.txt"], settings=others)
        assert (caught.value.location, caught.value.field) == (
            f"{files['bg.txt']}:2",
            "payee bankgiro",
        )
        assert "TK05" in caught.value.detail

    def test_several_bankgiros_may_be_configured_and_each_section_is_checked(self) -> None:
        def section(bankgiro: str) -> list[str]:
            return [
                ag_opening(bankgiro=bankgiro),
                ag_section("15", "20261128", 100, 1),
                ag_payment("82", "20261128", "9", 100, bankgiro=bankgiro),
                ag_closing("20261128", 1, 1),
            ]

        both = OURS.model_copy(update={"payee_bankgiros": sorted([BG, OTHER_BG])})
        two = lines(*section(BG), *section(OTHER_BG))
        assert ingest(io.BytesIO(two), name="two.txt", settings=both).events == 2
        with pytest.raises(InputError) as caught:
            ingest(io.BytesIO(two), name="two.txt")  # only BG is the union's
        assert caught.value.location == "two.txt:5"  # the second section's opening

    def test_a_customer_number_other_than_the_unions_is_refused(self) -> None:
        data = test_autogiro.GOOD.replace(
            ag_opening().encode(), ag_opening(customer="123456").encode()
        )
        with pytest.raises(InputError) as caught:
            ingest(io.BytesIO(data), name="ag.txt")
        error = caught.value
        assert (error.location, error.field) == ("ag.txt:1", "customer number")
        assert "'123456'" in error.detail
        assert "471117" in error.detail
        assert "positions 65-70" in error.detail

    def test_customer_numbers_are_not_checked_when_none_are_configured(self) -> None:
        data = test_autogiro.GOOD.replace(
            ag_opening().encode(), ag_opening(customer="123456").encode()
        )
        bankgiro_only = BankgirotSettings(payee_bankgiros=["991-2346"])
        unchanged = ingest(io.BytesIO(test_autogiro.GOOD), name="ag.txt").events
        assert ingest(io.BytesIO(data), name="ag.txt", settings=bankgiro_only).events == unchanged

    def test_every_fixture_names_the_unions_payee(self) -> None:
        # Every report kind carries its payee somewhere; with another union configured, each
        # fixture is refused naming the payee field (the file to Bankgirot is refused anyway).
        others = BankgirotSettings(payee_bankgiros=["5050-1055"])
        for path in sorted(HERE.glob("*.txt")):
            if "to_bankgirot" in path.name:
                continue
            with pytest.raises(InputError) as caught:
                ingest(path, settings=others)
            assert caught.value.field == "payee bankgiro", path

    def test_a_bgmax_file_with_a_second_section_for_another_payee(self) -> None:
        data = test_bgmax.GOOD.replace(
            bg_opening().encode(), bg_opening(bankgiro=OTHER_BG).encode()
        )
        with pytest.raises(InputError, match="5050-1055"):
            ingest(io.BytesIO(data), name="bg.txt")


class TestRunHistory:
    """Each ingest leaves one run (kind file, name = the source) in the ops store."""

    @staticmethod
    def recorded(store: InMemoryOpsStore):  # type: ignore[no-untyped-def]
        return list(store.runs(datetime(2000, 1, 1, tzinfo=UTC)))

    def test_a_queued_file_is_counted_by_source_and_kind_with_its_receipt(self, files) -> None:
        store, queue = InMemoryOpsStore(), InMemoryQueue()
        ingest(files["bg.txt"], queue=queue, ops=store)
        (run,) = self.recorded(store)
        assert (run.kind, run.name, run.detail["file"]) == ("file", "bgmax", str(files["bg.txt"]))
        assert run.counts == {
            "bgmax/payment.succeeded/queued": 3,
            "bgmax/payment.refunded/queued": 1,
        }
        assert sum(run.counts.values()) == len(queue.peek_events())
        assert run.detail["receipt"] == "3 payments, 600.00 SEK; 1 payment.refunded 50.00 SEK"
        assert "dry_run" not in run.detail
        assert run.ok

    def test_a_dry_run_is_marked_and_counts_nothing_as_queued(self, files) -> None:
        store = InMemoryOpsStore()
        report = ingest(files["ag.txt"], ops=store)
        (run,) = self.recorded(store)
        assert (run.name, run.detail["dry_run"], run.counts) == ("autogiro", "yes", {})
        count, total = report.totals["payment.succeeded"]["SEK"]
        assert run.detail["receipt"].startswith(f"{count} payments, {total // 100}.")

    def test_a_rejected_file_leaves_a_run_with_the_place_of_its_error(self, tmp_path) -> None:
        store = InMemoryOpsStore()
        with pytest.raises(InputError):
            ingest(bad_bgmax(tmp_path), queue=InMemoryQueue(), ops=store)
        (run,) = self.recorded(store)
        assert run.name == "bgmax"
        assert run.counts == {}
        assert str(tmp_path / "bad.txt") + ":" in run.errors[0]

    def test_a_store_that_fails_does_not_fail_the_ingest(self, files) -> None:
        class Down(InMemoryOpsStore):
            def record_run(self, run):  # type: ignore[no-untyped-def]
                raise TransientError("table runs: 503")

        queue = InMemoryQueue()
        report = ingest(files["bg.txt"], queue=queue, ops=Down())
        assert report.queued == len(queue.peek_events()) == 4
