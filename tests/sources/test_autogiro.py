"""Autogiro reports: what each record becomes, and every total checked against the file."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest

from dynamics_bridge.errors import InputError
from dynamics_bridge.sources import autogiro
from tests.conftest import shared_samples
from tests.sources.bankgirot_records import (
    ag_closing,
    ag_opening,
    ag_payment,
    ag_refund,
    ag_section,
    lines,
    record,
)


def parse(data: bytes, name: str = "ag.txt"):
    return list(autogiro.parse(io.BytesIO(data), name))


def spec(*records: str) -> bytes:
    return lines(ag_opening(), *records)


GOOD = spec(
    ag_section("15", "20261128", 50000, 2),
    ag_payment("82", "20261128", "100001", 25000),
    ag_payment("82", "20261128", "100002", 25000),
    ag_payment("82", "20261128", "100003", 25000, status="1"),
    ag_payment("82", "20261128", "100004", 25000, status="2"),
    ag_payment("82", "20261128", "100005", 25000, status="9"),
    ag_section("16", "20261128", 10000, 1, serial="00002"),
    ag_payment("32", "20261128", "100006", 10000),
    ag_payment("32", "20261128", "100007", 10000, status="1"),
    ag_section("17", "20261128", 25000, 1, serial="00003"),
    ag_refund("20261028", "100008", 25000, "20261127", "02"),
    ag_closing(
        "20261128",
        deposits=1,
        collections=2,
        withdrawals=1,
        payouts=1,
        refund_sections=1,
        refunds=1,
    ),
)


class TestPaymentSpecification:
    def test_each_status_becomes_its_kind(self) -> None:
        events = parse(GOOD)
        assert [(e.member_ref.value, e.kind.value, e.reason_code) for e in events] == [
            ("100001", "payment.succeeded", None),
            ("100002", "payment.succeeded", None),
            ("100003", "payment.failed", "1"),
            ("100004", "payment.failed", "2"),
            ("100005", "payment.rescheduled", "9"),
            ("100006", "payment.refunded", None),
            ("100007", "payment.failed", "1"),
            ("100008", "payment.refunded", "02"),
        ]

    def test_failures_carry_bankgirots_swedish_text(self) -> None:
        events = parse(GOOD)
        assert events[2].reason_text == "Täckning saknas"
        assert "återkallat" in (events[7].reason_text or "")

    def test_payer_numbers_are_member_refs_without_zero_fill(self) -> None:
        assert parse(GOOD)[0].member_ref.to_json() == {"kind": "payer_number", "value": "100001"}

    def test_dates_are_stockholm_days_and_a_refund_has_its_own_date(self) -> None:
        events = parse(GOOD)
        assert events[0].occurred_at.isoformat() == "2026-11-28T00:00:00+01:00"
        assert events[7].occurred_at.date().isoformat() == "2026-11-27"

    def test_origin_is_the_physical_line(self) -> None:
        assert parse(GOOD, "spec.txt")[0].origin == "spec.txt:3"

    def test_the_same_file_from_anywhere_gives_the_same_ids(self) -> None:
        assert [e.event_id for e in parse(GOOD, "a/x.txt")] == [
            e.event_id for e in parse(GOOD, "b/y.txt")
        ]

    def test_identical_records_are_distinct_payments(self) -> None:
        twice = spec(
            ag_section("15", "20261128", 50000, 2),
            ag_payment("82", "20261128", "100001", 25000),
            ag_payment("82", "20261128", "100001", 25000),
            ag_closing("20261128", 1, 2),
        )
        first, second = parse(twice)
        assert first.event_id != second.event_id

    def test_a_deposit_amount_that_does_not_add_up_names_its_line(self) -> None:
        bad = GOOD.replace(f"{50000:018d}".encode(), f"{50001:018d}".encode(), 1)
        with pytest.raises(InputError) as caught:
            parse(bad, "spec.txt")
        assert caught.value.location == "spec.txt:2"
        assert caught.value.field == "amount"
        assert "500.01 kr" in str(caught.value)
        assert "500.00 kr" in str(caught.value)

    def test_a_closing_count_that_does_not_add_up_names_its_line(self) -> None:
        bad = GOOD.replace(
            ag_closing("20261128", 1, 2, 1, 1, 1, 1).encode(),
            ag_closing("20261128", 1, 3, 1, 1, 1, 1).encode(),
        )
        with pytest.raises(InputError) as caught:
            parse(bad, "spec.txt")
        assert caught.value.location == "spec.txt:13"
        assert "approved collections" in str(caught.value)

    def test_a_missing_closing_record_is_refused(self) -> None:
        with pytest.raises(InputError, match="without its TK09"):
            parse(GOOD.rsplit(b"\r\n09", 1)[0] + b"\r\n")

    def test_a_payment_outside_its_section_is_refused(self) -> None:
        with pytest.raises(InputError, match="TK32 outside a TK16 section"):
            parse(
                spec(
                    ag_section("15", "20261128", 0, 0),
                    ag_payment("32", "20261128", "1", 100),
                    ag_closing("20261128", 1, 0),
                )
            )

    def test_a_non_numeric_amount_names_the_field(self) -> None:
        bad = GOOD.replace(b"000000025000000991", b"0000000250X0000991", 1)
        with pytest.raises(InputError) as caught:
            parse(bad, "spec.txt")
        assert caught.value.location == "spec.txt:3"

    def test_an_impossible_date_is_kept_raw_not_fatal(self) -> None:
        data = spec(
            ag_section("15", "20260631", 100, 1),
            ag_payment("82", "20260631", "7", 100),
            ag_closing("20261128", 1, 1),
        )
        (event,) = parse(data)
        assert "20260631" in (event.reason_text or "")
        assert event.occurred_at.date().isoformat() == "2026-11-28"  # the file's date


class TestOtherReports:
    def test_mandate_notices_map_comment_codes(self) -> None:
        data = lines(
            ag_opening("AG-MEDAVI", "20261128" + " " * 12),
            record(
                "73",
                (3, "0009912346"),
                (13, "0000000000100001"),
                (62, "04"),
                (64, "32"),
                (66, "20261128"),
            ),
            record(
                "73",
                (3, "0009912346"),
                (13, "0000000000100002"),
                (62, "46"),
                (64, "02"),
                (66, "20261128"),
            ),
            record(
                "73",
                (3, "0009912346"),
                (13, "0000000000100003"),
                (62, "04"),
                (64, "21"),
                (66, "20261128"),
            ),
            record("09", (3, "20261128"), (11, "9900"), (15, "0000003")),
        )
        events = parse(data)
        assert [(e.kind.value, e.reason_code) for e in events] == [
            ("mandate.approved", "04/32"),
            ("mandate.cancelled", "46/02"),
            ("mandate.rejected", "04/21"),
        ]
        assert "Felaktigt betalarnummer" in (events[2].reason_text or "")
        assert all(e.amount_minor == 0 for e in events)

    def test_a_request_file_to_bankgirot_is_refused_saying_what_it_is(self) -> None:
        data = lines(
            record("01", (3, "20261128"), (11, "AUTOGIRO"), (63, "471117"), (69, "0009912346")),
            ag_payment("82", "20261128", "100001", 25000),
        )
        with pytest.raises(InputError, match=r"payment order file .* sent TO Bankgirot"):
            parse(data)

    def test_an_empty_file_is_refused(self) -> None:
        with pytest.raises(InputError, match="no Autogiro records"):
            parse(b"\r\n\r\n")


def sample_events(folder: Path, name: str):
    with (folder / name).open("rb") as fh:
        return list(autogiro.parse(fh, name))


def kinds_and_sums(events) -> dict[str, tuple[int, int]]:
    counts, sums = Counter(), Counter()
    for e in events:
        counts[e.kind.value] += 1
        sums[e.kind.value] += e.amount_minor
    return {k: (counts[k], sums[k]) for k in counts}


class TestBankgirotsPublishedExamples:
    """Figures from ../shared/samples/payments/autogiro*/SOURCE.txt."""

    def test_payment_specification(self) -> None:
        folder = shared_samples("payments", "autogiro")
        got = kinds_and_sums(sample_events(folder, "autogiro_exempelfil_bet-spec-o-tk_sv.txt"))
        assert got["payment.succeeded"] == (5, 1_500_000)
        assert got["payment.rescheduled"] == (1, 300_000)
        assert got["payment.failed"] == (3, 2 * 300_000 + 100_000)
        # 3 approved payouts of 1 000,00 plus refunds of 200,00 and 500,00
        assert got["payment.refunded"] == (5, 300_000 + 20_000 + 50_000)

    def test_mandate_notices(self) -> None:
        folder = shared_samples("payments", "autogiro")
        events = sample_events(folder, "autogiro_exempelfiler_medgivandeavisering_sv.txt")
        assert Counter(e.kind.value for e in events) == {
            "mandate.approved": 3,
            "mandate.cancelled": 5,
            "mandate.rejected": 2,
        }
        assert [e.member_ref.value for e in events if e.kind == "mandate.approved"] == [
            "103",
            "101",
            "104",
        ]

    def test_rejected_payments(self) -> None:
        folder = shared_samples("payments", "autogiro")
        events = sample_events(folder, "autogiro_exempelfilavvisade_betalningsuppdrag_sv.txt")
        assert len(events) == 8
        assert sum(e.amount_minor for e in events) == 87_551 + 128_200

    def test_cancellations_and_changes(self) -> None:
        folder = shared_samples("payments", "autogiro")
        events = sample_events(
            folder, "autogiro_exempelfilermakuleringar_andringar-av-betalningar_sv.txt"
        )
        assert sum(e.amount_minor for e in events) == 111_000 + 577_500

    def test_internet_bank_mandates_and_register_extracts(self) -> None:
        folder = shared_samples("payments", "autogiro")
        emandates = sample_events(
            folder, "autogiro_exempelfil_nya_medgivanden_via_internetbank_sv.txt"
        )
        assert [e.member_ref.value for e in emandates] == ["111", "112", "113", "114"]
        extract = sample_events(folder, "autogiro_exempelfil-utdrag-ur-medgivanderegistret_sv.txt")
        assert Counter(e.kind.value for e in extract) == {
            "mandate.approved": 5,
            "mandate.requested": 2,
        }
        payments = kinds_and_sums(
            sample_events(folder, "autogiro_exempelfilutdrag-ur-bevakningsregistret_sv.txt")
        )
        assert payments["payment.scheduled"] == (10, 655_055 + 231_625)

    @pytest.mark.parametrize(
        "name",
        [
            "autogiro_exempelfil-betalningsunderlag_sv.txt",
            "autogiro_exempelfil_medgivandeunderlag_sv.txt",
            "autogiro_exempelfilermakulerings-andringsunderlag_sv.txt",
        ],
    )
    def test_files_to_bankgirot_are_refused(self, name: str) -> None:
        folder = shared_samples("payments", "autogiro")
        with pytest.raises(InputError, match="sent TO Bankgirot"):
            sample_events(folder, name)

    def test_old_layout(self) -> None:
        folder = shared_samples("payments", "autogiro-old-layout")
        spec_events = sample_events(folder, next(p.name for p in folder.glob("*betalningsspec*")))
        got = kinds_and_sums(spec_events)
        assert got["payment.succeeded"] == (11, 376_400)
        assert len(spec_events) == 15
        notices = sample_events(
            folder, next(p.name for p in folder.glob("autogiro_gl_medgivandeavisering_fran*"))
        )
        assert Counter(e.kind.value for e in notices) == {
            "mandate.approved": 5,
            "mandate.rejected": 1,
        }
        rejected = sample_events(folder, next(p.name for p in folder.glob("*avvisadebetaln_fran*")))
        assert sum(e.amount_minor for e in rejected) == 95_000
        requests = [p for p in folder.glob("*till-bankgirot*")]
        assert requests
        for path in requests:
            with pytest.raises(InputError, match="sent TO Bankgirot"):
                sample_events(folder, path.name)
