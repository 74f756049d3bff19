"""Keys, binds and filters: quoting (``O'Brien``), encoding, and keys Dataverse cannot address."""

from __future__ import annotations

import uuid
from decimal import Decimal
from urllib.parse import unquote

import pytest

from dynamics_bridge.dataverse.odata import bind, bind_path, key_literal, key_path, odata_in
from dynamics_bridge.errors import InputError


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("O'Brien", "'O''Brien'"),
        ("''", "''''''"),
        ("M-10023", "'M-10023'"),
        (12, "12"),
        (Decimal("2.50"), "2.50"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    ],
)
def test_literals_quote_strings_and_leave_numbers_bare(value, literal) -> None:
    assert key_literal(value) == literal


def test_a_boolean_is_not_a_key() -> None:
    with pytest.raises(TypeError):
        key_literal(True)


def test_a_key_path_doubles_quotes_and_percent_encodes_the_rest() -> None:
    path = key_path("contacts", {"mbr_memberno": "O'Brien 7 Åsa"})
    assert path == "contacts(mbr_memberno='O''Brien%207%20%C3%85sa')"
    assert unquote(path) == "contacts(mbr_memberno='O''Brien 7 Åsa')"


def test_a_multi_column_key_keeps_numbers_unquoted() -> None:
    assert (
        key_path("contacts", {"new_memberno": "M-10023", "new_orgcode": 12})
        == "contacts(new_memberno='M-10023',new_orgcode=12)"
    )


def test_a_bare_id_addresses_by_primary_key() -> None:
    guid = "9e7d2c41-5a10-f011-8406-000d3a2b1c77"
    assert key_path("annotations", guid) == f"annotations({guid})"


@pytest.mark.parametrize("bad", ["A/1", "50%", "a&b", "x:y", "1+1", "back\\slash", "q?"])
def test_keys_dataverse_cannot_address_are_refused_with_the_column(bad) -> None:
    with pytest.raises(InputError) as caught:
        key_path("contacts", {"mbr_memberno": bad})
    assert caught.value.field == "mbr_memberno"


def test_an_empty_key_is_a_bug() -> None:
    with pytest.raises(ValueError, match="at least one column"):
        key_path("contacts", {})


def test_a_lookup_is_bound_by_the_related_rows_alternate_key() -> None:
    assert bind("mbr_Member", "contacts", {"mbr_memberno": "O'Brien"}) == {
        "mbr_Member@odata.bind": "/contacts(mbr_memberno='O''Brien')"
    }
    assert bind_path("accounts", {"accountnumber": "A 1"}) == "/accounts(accountnumber='A 1')"
    assert key_path("accounts", {"accountnumber": "A 1"}, encode=False) == (
        "accounts(accountnumber='A 1')"
    )


def test_the_in_filter_is_dataverses_function() -> None:
    assert odata_in("c", ["a", "O'B"]) == (
        "Microsoft.Dynamics.CRM.In(PropertyName='c',PropertyValues=['a','O''B'])"
    )
