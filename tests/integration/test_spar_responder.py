"""The SPAR responder: answers that fit the contract, SPAR's ways of saying no, over a socket."""

from __future__ import annotations

import pytest
import requests
from dynamics_bridge_sandbox.spar import NOT_FOUND, SparResponder, demo_people, run_spar_responder
from lxml import etree

from dynamics_bridge.errors import InputError
from dynamics_bridge.registry import (
    SparClient,
    SparContract,
    SparNotFoundError,
    SparUndantagError,
)

pytestmark = pytest.mark.integration

SOAP_ENV = "{http://schemas.xmlsoap.org/soap/envelope/}"
QUESTION = (
    '<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>'
    '<q:SPARPersonsokningFraga xmlns:q="http://statenspersonadressregister.se/schema/personsok/'
    '2021.1/personsokningfraga" xmlns:i="http://statenspersonadressregister.se/schema/komponent/'
    'metadata/identifieringsinformationWs-1.1" xmlns:s="http://statenspersonadressregister.se/'
    'schema/komponent/sok/personsokningsokparametrar-1.1" xmlns:p="http://'
    'statenspersonadressregister.se/schema/komponent/person/person-1.2">'
    "<i:Identifieringsinformation><i:KundNrLeveransMottagare>500243</i:KundNrLeveransMottagare>"
    "<i:KundNrSlutkund>{customer}</i:KundNrSlutkund><i:UppdragId>637</i:UppdragId>"
    "<i:SlutAnvandarId>test</i:SlutAnvandarId></i:Identifieringsinformation>"
    "<s:PersonsokningFraga><p:IdNummer>{pnr}</p:IdNummer></s:PersonsokningFraga>"
    "</q:SPARPersonsokningFraga></S:Body></S:Envelope>"
)


def ask(responder: SparResponder, pnr: str, customer: int = 500243) -> tuple[int, etree._Element]:
    answer = responder.handle(
        "POST", "/personsok", {}, QUESTION.format(pnr=pnr, customer=customer).encode()
    )
    return answer.status, etree.fromstring(answer.body).find(f"{SOAP_ENV}Body")[0]


@pytest.mark.parametrize("person", demo_people(), ids=lambda p: p.last_name)
def test_every_answer_fits_the_response_schema(person) -> None:
    responder = SparResponder()
    status, answer = ask(responder, person.pnr)
    assert status == 200
    assert SparContract.from_paths().validate(answer) == []


def test_protected_person_answer_has_markers_only() -> None:
    (cecilia,) = [p for p in demo_people() if p.protected]
    _, answer = ask(SparResponder(), cecilia.pnr)
    names = {etree.QName(e).localname for e in answer.iter()}
    assert "Sekretessmarkering" in names
    assert not names & {"Namn", "Fornamn", "Folkbokforingsadress", "SvenskAdress"}


def test_request_outside_the_schema_gets_a_soap_fault() -> None:
    status, answer = ask(SparResponder(), "000000000000")
    assert status == 500
    assert answer.tag == f"{SOAP_ENV}Fault"


def test_unknown_customer_gets_an_undantag_and_is_not_counted_as_a_lookup() -> None:
    responder = SparResponder()
    _, answer = ask(responder, NOT_FOUND, customer=500001)
    assert [etree.QName(e).localname for e in answer] == ["Undantag", "UUID"]
    assert responder.lookups == []


def test_the_client_against_the_responder_over_http() -> None:
    with run_spar_responder() as spar:
        client = SparClient.from_settings(spar.settings(), requests.Session())
        assert client.lookup("196503129816").mailing_address.city == "STOCKHOLM"
        with pytest.raises(SparNotFoundError):
            client.lookup(NOT_FOUND)
        wrong = spar.settings().model_copy(update={"customer_number": 500001})
        with pytest.raises(SparUndantagError):
            SparClient.from_settings(wrong).lookup("196503129816")
        with pytest.raises(InputError):
            client.lookup("000000000000")
        assert spar.lookups == ["196503129816", NOT_FOUND]
