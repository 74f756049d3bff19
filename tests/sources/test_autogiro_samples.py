"""Bankgirot's published Autogiro example files give the figures in their SOURCE.txt.

The files live in ../shared/samples/payments (never copied into this repo); these tests skip
with a reason when that folder is absent.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dynamics_bridge.errors import InputError
from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.sources import autogiro
from dynamics_bridge.sources.bankgirot import Payees
from tests.conftest import shared_samples

#: The payee of Bankgirot's example files, as both SOURCE.txt files give it: customer number
#: 471117, payee bankgiro 0009912346. Every file is read as that union's.
SAMPLE_PAYEE = Payees(frozenset({"0009912346"}), frozenset({"471117"}))


def events_of(folder: Path, name: str, payees: Payees = SAMPLE_PAYEE) -> list[PaymentEvent]:
    with (folder / name).open("rb") as fh:
        return list(autogiro.parse(fh, name, payees=payees))


def one(folder: Path, pattern: str) -> str:
    (match,) = [p.name for p in folder.glob(pattern)]
    return match


def by_kind(events: list[PaymentEvent]) -> dict[str, tuple[int, int]]:
    """kind → (count, sum in öre)."""
    counts: Counter[str] = Counter()
    sums: Counter[str] = Counter()
    for e in events:
        counts[e.kind.value] += 1
        sums[e.kind.value] += e.amount_minor
    return {k: (counts[k], sums[k]) for k in counts}


@pytest.fixture
def new() -> Path:
    return shared_samples("payments", "autogiro")


@pytest.fixture
def old() -> Path:
    return shared_samples("payments", "autogiro-old-layout")


class TestNewLayout:
    def test_1_payment_specification(self, new: Path) -> None:
        events = events_of(new, "autogiro_exempelfil_bet-spec-o-tk_sv.txt")
        got = by_kind(events)
        assert got["payment.succeeded"] == (5, 5 * 300_000)  # 5 approved x 3000.00
        assert got["payment.rescheduled"] == (1, 300_000)  # status 9
        # status 1 and 2 on collections, status 1 on a payout of 1000.00
        assert got["payment.failed"] == (3, 2 * 300_000 + 100_000)
        # 3 executed payouts x 1000.00, refunds of 200.00 and 500.00
        assert got["payment.refunded"] == (5, 3 * 100_000 + 20_000 + 50_000)
        refunds = [e for e in events if e.reason_code in ("01", "02")]
        assert [(e.member_ref.value, e.reason_code, e.amount_minor) for e in refunds] == [
            ("114", "02", 20_000),
            ("115", "01", 50_000),
        ]
        assert refunds[0].occurred_at.date().isoformat() == "2009-11-10"  # the refund date
        assert {e.reason_text for e in events if e.reason_code == "1"} == {"Täckning saknas"}

    def test_2_mandate_notices(self, new: Path, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level("WARNING", logger="dynamics_bridge.sources.autogiro"):
            events = events_of(new, "autogiro_exempelfiler_medgivandeavisering_sv.txt")
        # SOURCE.txt: 10 TK73, (info/comment) in order 04/32, 03/33, 03/33, 46/02, 43/07,
        # 04/29, 42/32, 03/21, 05/32, 05/33; created 3, deleted 5, error 2. The two errors
        # (04/29 wrong payee bankgiro, 03/21 wrong payer number) are our own requests failing
        # (payments.md §1.3): no event, the mandate is unchanged, a warning asks for a task.
        assert [e.reason_code for e in events] == [
            "04/32",
            "03/33",
            "03/33",
            "46/02",
            "43/07",
            "42/32",
            "05/32",
            "05/33",
        ]
        payers = {
            kind: [e.member_ref.value for e in events if e.kind == kind]
            for kind in ("mandate.approved", "mandate.cancelled", "mandate.rejected")
        }
        assert payers == {
            "mandate.approved": ["103", "101", "104"],
            "mandate.cancelled": ["2222101", "103", "2222101", "102", "105"],
            "mandate.rejected": [],
        }
        failed = [r for r in caplog.records if r.outcome == autogiro.MANDATE_REQUEST_FAILED]
        assert [r.reason for r in failed] == ["04/29", "03/21"]
        assert "payer 3331022" in failed[0].getMessage()
        assert "payer 7771014" in failed[1].getMessage()

    def test_3_rejected_payments(self, new: Path) -> None:
        events = events_of(new, "autogiro_exempelfilavvisade_betalningsuppdrag_sv.txt")
        collections = [(e.amount_minor, e.reason_code) for e in events[:3]]
        payouts = [(e.amount_minor, e.reason_code) for e in events[3:]]
        assert collections == [(7_500, "02"), (25_000, "06"), (55_051, "08")]
        assert payouts == [
            (7_500, "01"),
            (8_000, "12"),
            (25_000, "10"),
            (7_500, "13"),
            (80_200, "01"),
        ]
        assert all(e.kind == "payment.failed" for e in events)
        # 20080633 is Bankgirot's own impossible date (comment 12 = wrong date): kept raw.
        assert "20080633" in (events[4].reason_text or "")

    def test_4_cancellations_and_date_changes(self, new: Path) -> None:
        """Done (comment 12/14/18) and about one payer: 4 collections = 1110.00 and 2 payouts
        = 5775.00, as the TK09 says; the 4 done records about no payer and the 8 failed ones
        create no event."""
        events = events_of(new, "autogiro_exempelfilermakuleringar_andringar-av-betalningar_sv.txt")
        assert [(e.member_ref.value, e.kind.value, e.amount_minor) for e in events] == [
            ("5555242", "payment.cancelled", 21_000),
            ("101", "payment.cancelled", 15_000),
            ("102", "payment.cancelled", 25_000),
            ("7771014", "payment.cancelled", 500_000),  # payout
            ("107", "payment.rescheduled", 50_000),
            ("109", "payment.rescheduled", 77_500),  # payout
        ]
        assert 21_000 + 15_000 + 25_000 + 50_000 == 111_000
        assert 500_000 + 77_500 == 577_500
        assert "nytt datum 20080616" in (events[4].reason_text or "")

    def test_5_mandates_via_internet_bank(self, new: Path) -> None:
        events = events_of(new, "autogiro_exempelfil_nya_medgivanden_via_internetbank_sv.txt")
        assert [(e.member_ref.value, e.reason_code) for e in events] == [
            ("111", "0"),
            ("112", "0"),
            ("113", "1"),
            ("114", "1"),
        ]
        assert all(e.kind == "mandate.requested" for e in events)

    def test_6_payment_register_extract(self, new: Path) -> None:
        events = events_of(new, "autogiro_exempelfilutdrag-ur-bevakningsregistret_sv.txt")
        collections = [e.amount_minor for e in events if "autogiro" in (e.reason_text or "")]
        payouts = [e.amount_minor for e in events if "utbetalning" in (e.reason_text or "")]
        assert (len(collections), sum(collections)) == (5, 655_055)
        assert (len(payouts), sum(payouts)) == (5, 231_625)

    def test_7_mandate_register_extract(self, new: Path) -> None:
        events = events_of(new, "autogiro_exempelfil-utdrag-ur-medgivanderegistret_sv.txt")
        assert Counter(e.kind.value for e in events) == {
            "mandate.approved": 5,
            "mandate.requested": 2,
        }

    @pytest.mark.parametrize(
        ("name", "what"),
        [
            ("autogiro_exempelfil-betalningsunderlag_sv.txt", "payment order file"),
            ("autogiro_exempelfil_medgivandeunderlag_sv.txt", "mandate order file"),
            (
                "autogiro_exempelfilermakulerings-andringsunderlag_sv.txt",
                "cancellation/change order file",
            ),
        ],
    )
    def test_8_to_10_files_to_bankgirot_are_refused_saying_what_they_are(
        self, new: Path, name: str, what: str
    ) -> None:
        with pytest.raises(InputError, match=f"{what}.*sent TO Bankgirot") as caught:
            events_of(new, name)
        assert caught.value.location is not None
        assert caught.value.location.startswith(f"{name}:")

    def test_every_file_in_the_folder_is_covered(self, new: Path) -> None:
        """A new sample file fails here until it has a test above."""
        assert len([p for p in new.glob("*.txt") if p.name != "SOURCE.txt"]) == 10


class TestOldLayout:
    def test_payment_specification_counts_stopped_records_in_its_totals(self, old: Path) -> None:
        events = events_of(old, one(old, "*betalningsspec*"))
        got = by_kind(events)
        assert got["payment.succeeded"] == (11, 376_400)
        collections = [e for e in events if e.reason_code in ("1", "2", "9")]
        assert len(collections) == 4  # status 1, 2, 9 collections and the status-1 payout
        assert sum(e.amount_minor for e in events) == 1_687_400 + 547_500  # TK09: all records

    def test_rejected_payments_bankgiro_mandates(self, old: Path) -> None:
        events = events_of(old, one(old, "*avvisadebetaln_fran*"))
        assert [(e.amount_minor, e.reason_code) for e in events] == [
            (50_000, "01"),
            (20_000, "01"),
            (10_000, "03"),
            (15_000, "07"),
        ]

    def test_rejected_payments_account_mandates(self, old: Path) -> None:
        events = events_of(old, one(old, "*exempelfil_avvisadebetalningar_fran*"))
        assert [e.reason_code for e in events] == ["01", "03", "02", "07"]
        assert sum(e.amount_minor for e in events) == 95_000

    def test_cancellations_and_changes(self, old: Path) -> None:
        events = events_of(old, one(old, "*exempelfil_makulering-andring_fran*"))
        assert [(e.kind.value, e.reason_code) for e in events] == [
            ("payment.cancelled", "23/12"),
            ("payment.cancelled", "25/12"),
            ("payment.cancelled", "03/12"),
            ("payment.rescheduled", "29/14"),
        ]
        assert sum(e.amount_minor for e in events) == 95_000

    def test_mandate_notices_bankgiro_mandates(
        self, old: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        # SOURCE.txt: 6 TK73, 5 x 04/32 new mandate, 1 x 04/10 already exists (our request
        # failed: no event, a warning).
        with caplog.at_level("WARNING", logger="dynamics_bridge.sources.autogiro"):
            events = events_of(old, one(old, "autogiro_gl_medgivandeavisering_fran*"))
        assert Counter((e.kind.value, e.reason_code) for e in events) == {
            ("mandate.approved", "04/32"): 5
        }
        assert [r.reason for r in caplog.records] == ["04/10"]

    def test_mandate_notices_account_mandates(
        self, old: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        # SOURCE.txt: 7 TK73, 4 x 04/32, 2 x 04/10, 1 x 03/33.
        with caplog.at_level("WARNING", logger="dynamics_bridge.sources.autogiro"):
            events = events_of(old, one(old, "*exempelfil_medgivandeavisering_fran*"))
        assert Counter((e.kind.value, e.reason_code) for e in events) == {
            ("mandate.approved", "04/32"): 4,
            ("mandate.cancelled", "03/33"): 1,
        }
        assert [r.reason for r in caplog.records] == ["04/10", "04/10"]

    def test_mandates_via_internet_bank(self, old: Path) -> None:
        (event,) = events_of(old, one(old, "*medgivanden_via_internetbanken*"))
        assert event.kind == "mandate.requested"

    def test_files_to_bankgirot_are_refused(self, old: Path) -> None:
        requests = sorted(p.name for p in old.glob("*till-bankgirot*"))
        assert len(requests) == 6
        for name in requests:
            with pytest.raises(InputError, match="sent TO Bankgirot"):
                events_of(old, name)

    def test_every_file_in_the_folder_is_covered(self, old: Path) -> None:
        assert len([p for p in old.glob("*.txt") if p.name != "SOURCE.txt"]) == 7 + 6


class TestAnotherUnion:
    """Configured for another payee, every report from Bankgirot is refused at the first record
    naming its payee (the opening record, or the first register record of the extract)."""

    OTHER = Payees(frozenset({"0050501055"}), frozenset({"471117"}))

    @pytest.mark.parametrize("layout", ["autogiro", "autogiro-old-layout"])
    def test_each_report_is_refused_naming_the_payee_field(self, layout: str) -> None:
        folder = shared_samples("payments", layout)
        reports = [  # files TO Bankgirot are refused as such, whoever they are for
            p
            for p in sorted(folder.glob("*.txt"))
            if p.name != "SOURCE.txt" and "underlag" not in p.name and "till-" not in p.name
        ]
        assert reports
        for path in reports:
            with pytest.raises(InputError) as caught:
                events_of(folder, path.name, self.OTHER)
            assert caught.value.field == "payee bankgiro", path.name
            assert "991-2346" in caught.value.detail, path.name

    def test_another_customer_number_is_refused_where_the_opening_has_one(self, new: Path) -> None:
        other_customer = Payees(frozenset({"0009912346"}), frozenset({"123456"}))
        with pytest.raises(InputError) as caught:
            events_of(new, "autogiro_exempelfil_bet-spec-o-tk_sv.txt", other_customer)
        assert caught.value.field == "customer number"
        raw = (new / "autogiro_exempelfil_bet-spec-o-tk_sv.txt").read_bytes().splitlines()
        opening = next(i for i, line in enumerate(raw, start=1) if line.startswith(b"01"))
        assert opening > 1  # a title line stands before it
        assert caught.value.location == f"autogiro_exempelfil_bet-spec-o-tk_sv.txt:{opening}"
        assert "positions 65-70" in caught.value.detail
