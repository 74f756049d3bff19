"""The PersonSok contract loads from disk only, validates requests with lxml, and SPAR's own
published WSDL (../shared/samples/soap/spar, when present) works the same way as ours."""

from __future__ import annotations

from pathlib import Path

import pytest
import responses
from lxml import etree

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.registry import BUNDLED_WSDL, SPAR_SCHEMA_URL, SparContract
from tests.registry import answers
from tests.registry.conftest import make_client, spar_samples

SPAR_WSDL = ("granssnitt", "personsok", "2021.1", "personsok.wsdl")
ANSWER_NS = "{http://statenspersonadressregister.se/schema/personsok/2021.1/personsokningsvar}"


def body_element(envelope: bytes) -> etree._Element:
    root = etree.fromstring(envelope)
    return root[0][0]


def test_spar_published_wsdl_loads_offline_and_nothing_is_fetched() -> None:
    contract = SparContract.from_paths(spar_samples().joinpath(*SPAR_WSDL))
    with responses.RequestsMock() as rsps:  # any HTTP request would fail here
        client = make_client(contract)
        assert len(rsps.calls) == 0
    assert contract.schema_root == spar_samples().resolve()
    operation = client._service._binding._operations["PersonSok"]
    assert operation.soapaction.endswith("/PersonsokService/Personsok")


def test_spar_schema_urls_map_into_the_schema_root() -> None:
    root = spar_samples()
    contract = SparContract.from_paths(root.joinpath(*SPAR_WSDL))
    url = SPAR_SCHEMA_URL + "granssnitt/personsok/2021.1/PersonsokningFraga.xsd"
    assert (
        contract.resolve(url)
        == root.resolve() / "granssnitt/personsok/2021.1/PersonsokningFraga.xsd"
    )


@pytest.mark.parametrize(
    "example", ["personsok-svar-example.xml", "personsok-svar-skyddad-example.xml"]
)
def test_spar_examples_validate_against_our_contract_too(example: str) -> None:
    """Our contract keeps SPAR's names and namespaces: SPAR-shaped answers fit it."""
    envelope = (spar_samples() / "examples" / example).read_bytes()
    assert SparContract.from_paths().validate(body_element(envelope)) == []


ALL_ANSWERS = {
    "found": answers.found(special=True),
    "protected": answers.protected_identity(),
    "not_found": answers.not_found(),
    "deceased": answers.deceased(),
    "emigrated": answers.emigrated(),
    "deregistered": answers.deregistered(),
    "undantag": answers.undantag(),
    "too_many": answers.too_many(),
}


@pytest.mark.parametrize("name", sorted(ALL_ANSWERS))
def test_the_tests_answers_fit_the_schemas(name: str, contract: SparContract) -> None:
    """The hand-written answers are honest: both contracts accept them."""
    element = body_element(ALL_ANSWERS[name])
    assert element.tag == f"{ANSWER_NS}SPARPersonsokningSvar"
    assert contract.validate(element) == []


def test_remote_schema_is_refused(tmp_path: Path) -> None:
    text = BUNDLED_WSDL.read_text().replace(
        SPAR_SCHEMA_URL + "granssnitt/personsok/2021.1/PersonsokningSvar.xsd",
        "https://schemas.example.invalid/PersonsokningSvar.xsd",
    )
    wsdl = tmp_path / "personsok.wsdl"
    wsdl.write_text(text)
    contract = SparContract.from_paths(wsdl, BUNDLED_WSDL.parents[3])
    with responses.RequestsMock(), pytest.raises(ConfigError, match="refusing to load https://"):
        make_client(contract)


def test_file_outside_the_contract_folders_is_refused(tmp_path: Path) -> None:
    contract = SparContract.from_paths()
    outside = tmp_path / "elsewhere.xsd"
    outside.write_text("<x/>")
    with pytest.raises(ConfigError, match="outside"):
        contract.resolve(str(outside))
    with pytest.raises(ConfigError, match="outside"):
        contract.resolve(SPAR_SCHEMA_URL + "../../../../etc/passwd")


def test_missing_wsdl_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BRIDGE_SPAR__WSDL_PATH"):
        SparContract.from_paths(tmp_path / "nope.wsdl")


def test_validation_names_the_element_and_facet_but_not_the_value() -> None:
    question = (
        '<q:SPARPersonsokningFraga xmlns:q="http://statenspersonadressregister.se/schema/'
        'personsok/2021.1/personsokningfraga" xmlns:i="http://statenspersonadressregister.se/'
        'schema/komponent/metadata/identifieringsinformationWs-1.1" xmlns:s="http://'
        'statenspersonadressregister.se/schema/komponent/sok/personsokningsokparametrar-1.1" '
        'xmlns:p="http://statenspersonadressregister.se/schema/komponent/person/person-1.2">'
        "<i:Identifieringsinformation><i:KundNrLeveransMottagare>500001</i:KundNrLeveransMottagare>"
        "<i:KundNrSlutkund>500001</i:KundNrSlutkund><i:UppdragId>1</i:UppdragId>"
        "<i:SlutAnvandarId>t</i:SlutAnvandarId></i:Identifieringsinformation>"
        "<s:PersonsokningFraga><p:IdNummer>091212121212</p:IdNummer></s:PersonsokningFraga>"
        "</q:SPARPersonsokningFraga>"
    )
    problems = SparContract.from_paths().validate(etree.fromstring(question))
    assert len(problems) == 1
    assert "IdNummer" in problems[0]
    assert "pattern" in problems[0]
    assert "091212121212" not in problems[0]
