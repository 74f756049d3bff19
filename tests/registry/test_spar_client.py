"""SparClient: one PersonSok per lookup, and every answer SPAR can give turned into a record or a
clear error of the project's tree. HTTP is mocked with ``responses``; answers are hand-written
from the contract (tests/registry/answers.py)."""

from __future__ import annotations

import contextlib
import logging

import pytest
import requests
import responses
from lxml import etree

from dynamics_bridge.errors import (
    AuthError,
    InputError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from dynamics_bridge.registry import (
    SparFaultError,
    SparNotFoundError,
    SparTooManyHitsError,
    SparUndantagError,
)
from tests.registry import answers
from tests.registry.conftest import ENDPOINT, make_client

SOAP_ACTION = "http://skatteverket.se/spar/personsok/2021.1/PersonsokService/Personsok"


def answer(rsps: responses.RequestsMock, body: bytes, status: int = 200) -> None:
    rsps.add(responses.POST, ENDPOINT, body=body, status=status, content_type="text/xml")


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


def test_found_person_is_a_record_with_the_address_to_post_to(rsps, contract) -> None:
    answer(rsps, answers.found(special=True))
    record = make_client(contract).lookup("19121212-1212")

    assert record.status == "active"
    assert not record.protected_identity
    assert record.personnummer.digits == answers.TOLVAN
    assert record.name
    assert (record.name.first_names, record.name.last_name) == (
        "Tolvan",
        "Tolvansson",
    )
    assert record.registered_address
    assert record.registered_address.postal_code == "11146"
    # Post goes to the special postal address when the person asked for one (soap.md §1.4).
    assert record.mailing_address == record.special_address
    assert record.mailing_address.label() == ["c/o Exempel AB", "Box 123", "10005 STOCKHOLM"]
    assert record.spar_uuid == "00000000-0000-4000-8000-0000000000aa"


def test_request_is_document_literal_with_the_soap_action_and_identification(
    rsps, contract
) -> None:
    answer(rsps, answers.found())
    make_client(contract, delivery_customer_number=500001).lookup(answers.TOLVAN)

    request = rsps.calls[0].request
    assert request.headers["SOAPAction"].strip('"') == SOAP_ACTION
    body = etree.fromstring(request.body)
    text = {etree.QName(e).localname: e.text for e in body.iter() if e.text and e.text.strip()}
    assert text["KundNrLeveransMottagare"] == "500001"
    assert text["KundNrSlutkund"] == "500243"
    assert text["UppdragId"] == "637"
    assert text["SlutAnvandarId"] == "bridge:address-refresh"
    assert text["IdNummer"] == answers.TOLVAN  # always the 12-digit form


def test_ten_digit_input_is_sent_as_twelve_digits(rsps, contract) -> None:
    answer(rsps, answers.found())
    make_client(contract).lookup("121212+1212")  # 100 or older: 1912
    assert b">191212121212</" in rsps.calls[0].request.body


def test_not_found_is_an_answer_without_a_record(rsps, contract) -> None:
    answer(rsps, answers.not_found())
    with pytest.raises(SparNotFoundError) as caught:
        make_client(contract).lookup(answers.TOLVAN)
    assert isinstance(caught.value, NotFoundError)
    assert caught.value.request_id == "00000000-0000-4000-8000-0000000000aa"
    assert answers.TOLVAN not in str(caught.value)


def test_protected_identity_has_markers_and_no_name_or_address(rsps, contract) -> None:
    answer(rsps, answers.protected_identity())
    record = make_client(contract).lookup(answers.PROTECTED)
    assert record.protected_identity
    assert record.confidentiality_marked
    assert record.name is None
    assert record.mailing_address is None
    assert record.registered_address is None


def test_protected_answer_that_carries_an_address_is_still_kept_without_one(rsps, contract) -> None:
    body = answers.envelope(
        answers.post(answers.PROTECTED, protected="JA", rest=f"{answers.NAME}|{answers.REGISTERED}")
    )
    answer(rsps, body)
    record = make_client(contract).lookup(answers.PROTECTED)
    assert record.protected_registration
    assert record.name is None
    assert record.registered_address is None


def test_deceased_person(rsps, contract) -> None:
    answer(rsps, answers.deceased())
    record = make_client(contract).lookup(answers.TOLVAN)
    assert record.status == "deceased"
    assert record.deceased_on == "2025-02-03"


def test_emigrated_person_has_the_foreign_address(rsps, contract) -> None:
    answer(rsps, answers.emigrated())
    record = make_client(contract).lookup(answers.TOLVAN)
    assert record.status == "emigrated"
    assert record.mailing_address
    assert record.mailing_address.country == "STORBRITANNIEN"
    assert record.deregistered_on == "2024-06-30"


def test_deregistered_for_another_reason(rsps, contract) -> None:
    answer(rsps, answers.deregistered(code="OB"))
    record = make_client(contract).lookup(answers.TOLVAN)
    assert record.status == "deregistered"
    assert record.deregistration_code == "OB"
    assert record.mailing_address is None


def test_too_many_hits(rsps, contract) -> None:
    answer(rsps, answers.too_many(250, 100))
    with pytest.raises(SparTooManyHitsError) as caught:
        make_client(contract).lookup(answers.TOLVAN)
    assert (caught.value.hits, caught.value.max_hits) == (250, 100)
    assert isinstance(caught.value, PermanentError)


def test_undantag_is_an_error_with_spar_code_and_text(rsps, contract) -> None:
    answer(rsps, answers.undantag("1", "Felaktigt kundnummer"))
    with pytest.raises(SparUndantagError) as caught:
        make_client(contract).lookup(answers.TOLVAN)
    assert caught.value.code == "1"
    assert "Felaktigt kundnummer" in str(caught.value)
    assert isinstance(caught.value, PermanentError)


def test_soap_fault_is_an_error_and_its_text_is_masked(rsps, contract) -> None:
    answer(rsps, answers.fault("soap:Client", "Ogiltigt IdNummer 191212121212"), status=500)
    with pytest.raises(SparFaultError) as caught:
        make_client(contract).lookup(answers.TOLVAN)
    assert caught.value.code == "soap:Client"
    assert "19121212-****" in str(caught.value)
    assert answers.TOLVAN not in str(caught.value)


def test_timeout_is_transient(rsps, contract) -> None:
    rsps.add(responses.POST, ENDPOINT, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(TransientError, match="did not answer within 5 s"):
        make_client(contract).lookup(answers.TOLVAN)


def test_connection_failure_is_transient(rsps, contract) -> None:
    rsps.add(responses.POST, ENDPOINT, body=requests.exceptions.ConnectionError("refused"))
    with pytest.raises(TransientError, match="unreachable"):
        make_client(contract).lookup(answers.TOLVAN)


@pytest.mark.parametrize(("status", "error"), [(503, TransientError), (403, AuthError)])
def test_http_errors_without_a_fault(rsps, contract, status, error) -> None:
    answer(rsps, b"<html>busy</html>", status=status)
    with pytest.raises(error, match=f"HTTP {status}"):
        make_client(contract).lookup(answers.TOLVAN)


def test_answer_outside_the_contract_is_permanent_and_names_the_wsdl_setting(
    rsps, contract
) -> None:
    answer(rsps, answers.envelope("<svar:Okand>x</svar:Okand>"))
    with pytest.raises(PermanentError, match="BRIDGE_SPAR__WSDL_PATH"):
        make_client(contract).lookup(answers.TOLVAN)


@pytest.mark.parametrize("bad", ["191212121213", "abc", "19121312-1212", "2112121212123"])
def test_invalid_personnummer_never_reaches_the_wire(rsps, contract, bad) -> None:
    with pytest.raises(InputError):
        make_client(contract).lookup(bad)
    assert len(rsps.calls) == 0


def test_request_failing_the_xsd_is_not_sent(rsps, contract) -> None:
    """zeep checks no facets; lxml does (SlutAnvandarId is 1-256 characters)."""
    client = make_client(contract, end_user_id="x" * 300)
    with pytest.raises(InputError, match="does not match the schema"):
        client.lookup(answers.TOLVAN)
    assert len(rsps.calls) == 0


def test_no_log_record_holds_a_full_personnummer(rsps, contract, caplog) -> None:
    """Every lookup outcome, with zeep asked for DEBUG (it would log whole bodies)."""
    caplog.set_level(logging.DEBUG)
    logging.getLogger("zeep").setLevel(logging.DEBUG)
    logging.getLogger("zeep.transports").setLevel(logging.DEBUG)
    for body in (answers.found(), answers.not_found(), answers.undantag(), answers.deceased()):
        answer(rsps, body)
    answer(rsps, answers.fault(text=f"Ogiltigt IdNummer {answers.TOLVAN}"), status=500)
    client = make_client(contract)
    for _ in range(5):
        with contextlib.suppress(SparNotFoundError, SparUndantagError, SparFaultError):
            client.lookup(answers.TOLVAN)
    with pytest.raises(InputError):
        client.lookup("191212121213")

    assert caplog.records, "lookups are logged (masked)"
    for record in caplog.records:
        text = record.getMessage() + " " + " ".join(map(str, record.__dict__.values()))
        assert answers.TOLVAN not in text, record.name
        assert "1912121212" not in text, record.name
    assert not [r for r in caplog.records if r.name.startswith("zeep") and r.levelno < 30]
