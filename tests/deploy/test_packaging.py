"""What gets deployed: requirements.txt in step with pyproject.toml, no secret in the example
settings, and a staged app (``make functionapp``) that indexes its functions on its own."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import ROOT
from tests.deploy.conftest import APP_DIR

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def name_of(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def requirements() -> list[str]:
    lines = (APP_DIR / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_requirements_hold_every_runtime_dependency_and_the_functions_extra() -> None:
    wanted = PYPROJECT["project"]["dependencies"]
    wanted += PYPROJECT["project"]["optional-dependencies"]["functions"]
    assert {name_of(r) for r in wanted} <= {name_of(r) for r in requirements()}


def test_azure_functions_is_pinned_to_the_release_for_python_3_11_in_both_places() -> None:
    extra = PYPROJECT["project"]["optional-dependencies"]["functions"]
    assert "azure-functions==1.26.0" in extra
    assert "azure-functions==1.26.0" in requirements()
    assert not any(name_of(r) == "azure-functions-worker" for r in requirements())


def test_the_example_settings_hold_placeholders_not_secrets() -> None:
    values = json.loads((APP_DIR / "local.settings.json.example").read_text())["Values"]
    for name in ("BRIDGE_BILLOGRAM__SIGN_KEY", "BRIDGE_DATAVERSE__CLIENT_SECRET"):
        assert values[name].startswith("<")
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"


def test_local_settings_are_never_committed_nor_deployed() -> None:
    assert "local.settings.json" in (ROOT / ".gitignore").read_text().splitlines()
    assert "local.settings.json" in (APP_DIR / ".funcignore").read_text().splitlines()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_staged_app_indexes_its_functions_from_its_own_folder(tmp_path) -> None:
    staged = tmp_path / "functionapp"
    subprocess.run(
        ["make", "-s", "functionapp", f"FUNCTIONAPP={staged}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert {p.name for p in staged.iterdir()} >= {
        "function_app.py",
        "host.json",
        "requirements.txt",
        ".funcignore",
        "dynamics_bridge",
        "mappings",
    }
    probe = (
        "import function_app, dynamics_bridge.mapping.loader as loader;"
        "print(len(function_app.app.get_functions()), loader.DEFAULT_MAPPING.is_file(),"
        " dynamics_bridge.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import dynamics_bridge;" + probe],
        cwd=staged,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out[:2] == ["13", "True"]
    assert out[2].startswith(str(staged))  # the copy beside function_app.py, not the checkout
    shipped = {p.relative_to(staged).as_posix() for p in staged.rglob("*.py")}
    local_only = [
        p
        for p in shipped
        if any(word in p for word in ("sandbox", "demo", "testing", "support", "writer", "test_"))
        and not p.startswith("dynamics_bridge/cli/")  # the commands only say how to install it
    ]
    assert local_only == [], "stand-ins, demo and test support are never deployed"
    imported = subprocess.run(
        [sys.executable, "-c", "import function_app, sys; print(' '.join(sorted(sys.modules)))"],
        cwd=staged,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    # http.server is not listed: azure.functions loads it (through werkzeug) on its own.
    assert not [
        m for m in imported if m in {"sqlite3", "cryptography"} or m.startswith("dynamics_bridge_")
    ]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_spars_contract_is_packaged_and_found_from_the_app_folder(tmp_path) -> None:
    """`make functionapp` copies SPAR_CONTRACT (default spar/) to spar/ in the app; a relative
    BRIDGE_SPAR__WSDL_PATH is taken from the app folder (AzureWebJobsScriptRoot)."""
    contract = tmp_path / "spar-from-onboarding"
    shutil.copytree(ROOT / "dynamics_bridge" / "registry" / "wsdl", contract)  # same layout
    staged = tmp_path / "functionapp"
    subprocess.run(
        ["make", "-s", "functionapp", f"FUNCTIONAPP={staged}", f"SPAR_CONTRACT={contract}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    wsdl = "spar/granssnitt/personsok/2021.1/personsok.wsdl"
    assert (staged / wsdl).is_file()
    probe = (
        "from dynamics_bridge.registry import SparClient;"
        "from dynamics_bridge.settings import load_settings;"
        "print(SparClient.from_settings(load_settings().spar).contract.wsdl_path)"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "AzureWebJobsScriptRoot": str(staged),
        "BRIDGE_SPAR__ENDPOINT": "https://spar.test.invalid/personsok",
        "BRIDGE_SPAR__CUSTOMER_NUMBER": "500243",
        "BRIDGE_SPAR__ASSIGNMENT_ID": "637",
        "BRIDGE_SPAR__END_USER_ID": "union:address-refresh",
        "BRIDGE_SPAR__WSDL_PATH": wsdl,
    }
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,  # not the app folder: the root comes from the host's setting
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert out == str((staged / wsdl).resolve())


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_without_a_spar_folder_nothing_is_packaged_and_the_build_says_so(tmp_path) -> None:
    staged = tmp_path / "functionapp"
    done = subprocess.run(
        ["make", "-s", "functionapp", f"FUNCTIONAPP={staged}", f"SPAR_CONTRACT={tmp_path / 'no'}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    assert not (staged / "spar").exists()
    assert "no SPAR contract packaged" in done.stdout


def test_the_example_settings_load_once_filled_in_and_say_what_azurite_cannot_do(
    monkeypatch,
) -> None:
    example = json.loads((APP_DIR / "local.settings.json.example").read_text())
    assert any("Event Grid" in line and "Azurite" in line for line in example["_comment"])
    values = example["Values"]
    for name in ("ENDPOINT", "CUSTOMER_NUMBER", "ASSIGNMENT_ID", "END_USER_ID", "WSDL_PATH"):
        assert f"BRIDGE_SPAR__{name}" in values
    assert json.loads(values["BRIDGE_DATAVERSE__APP_USERS"]) == []
    filled = {
        "BRIDGE_SPAR__ENDPOINT": "http://127.0.0.1:8080/personsok",
        "BRIDGE_DATAVERSE__URL": "https://org.crm4.dynamics.com",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, filled.get(name, "filled-in" if value.startswith("<") else value))
    from dynamics_bridge.registry import BUNDLED_WSDL, SparClient
    from dynamics_bridge.settings import load_settings

    settings = load_settings()  # the empty values (APSIS, WSDL path...) mean unset
    assert settings.spar.configured
    assert not settings.apsis.configured
    assert SparClient.from_settings(settings.spar).contract.wsdl_path == BUNDLED_WSDL
