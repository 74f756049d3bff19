"""map_answer: the parsed answer (plain dicts, as zeep serialises it) to an AddressRecord."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dynamics_bridge.personnummer import Personnummer
from dynamics_bridge.registry import SparTooManyHitsError, map_answer

AT = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
ASKED = Personnummer("191212121212")


def person(pnr: str = "191212121212", **fields: object) -> dict:
    return {
        "PersonId": {"IdNummer": pnr, "Typ": "PERSONNUMMER"},
        "Sekretessmarkering": {"_value_1": "NEJ", "sattAvSPAR": None},
        "SkyddadFolkbokforing": "NEJ",
        **fields,
    }


def swedish(street: str, until: str | None = None) -> dict:
    return {
        "SvenskAdress": {
            "DatumFrom": "2020-01-01" if until else None,
            "DatumTill": until,
            "Utdelningsadress2": street,
            "PostNr": "11146",
            "Postort": "STOCKHOLM",
        }
    }


def test_with_history_only_the_current_address_counts() -> None:
    answer = {
        "PersonsokningSvarspost": [
            person(
                Folkbokforingsadress=[
                    swedish("Gamla vägen 1", until="2024-01-31"),
                    swedish("Nya gatan 2", until="9999-12-31"),
                ]
            )
        ]
    }
    record = map_answer(answer, ASKED, looked_up_at=AT)
    assert record.registered_address
    assert record.registered_address.lines == ("Nya gatan 2",)


def test_marker_set_by_spar_and_the_protection_date() -> None:
    answer = {
        "PersonsokningSvarspost": [
            person(
                Sekretessmarkering={"_value_1": "JA", "sattAvSPAR": "JA"},
                SekretessDatum="2026-05-01",
                Folkbokforingsadress=[swedish("Hemlig väg 1")],
            )
        ]
    }
    record = map_answer(answer, ASKED, looked_up_at=AT)
    assert record.protected_identity
    assert record.marker_set_by_spar
    assert record.protected_since.isoformat() == "2026-05-01"
    assert record.registered_address is None  # never kept, even when an answer carries one


def test_referral_to_a_new_number_is_kept() -> None:
    details = {"Hanvisning": [{"Typ": "Till", "IdNummer": "189001019802"}]}
    answer = {"PersonsokningSvarspost": [person(Persondetaljer=[details])]}
    record = map_answer(answer, ASKED, looked_up_at=AT)
    assert record.new_personnummer == Personnummer("189001019802")


def test_several_records_none_of_them_the_number_asked_is_too_many() -> None:
    answer = {"PersonsokningSvarspost": [person("189001019802"), person("195001019808")]}
    with pytest.raises(SparTooManyHitsError):
        map_answer(answer, ASKED, looked_up_at=AT)


def test_json_form_masks_personnummer_unless_asked() -> None:
    record = map_answer(
        {"PersonsokningSvarspost": [person()], "UUID": "u-1"}, ASKED, looked_up_at=AT
    )
    assert record.to_json()["personnummer"] == "19121212-****"
    assert record.to_json(show_pnr=True)["personnummer"] == "191212121212"
    assert record.to_json()["spar_uuid"] == "u-1"
