"""infra/main.bicep, read with pycep-parser (syntax only: no types, no API-version checks), and
host.json against Dataverse's concurrency limit."""

from __future__ import annotations

import json
import typing
from functools import cache
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from dynamics_bridge.hosting import (
    DATAVERSE_CONCURRENT_LIMIT,
    dataverse_concurrency,
    queue_host_options,
)
from dynamics_bridge.jobs import JOBS
from dynamics_bridge.settings import Settings, env_name
from tests.deploy.conftest import APP_DIR

pycep = pytest.importorskip("pycep", reason="pycep-parser is a dev dependency")

#: Secret settings that are deliberately not in Azure, and why.
NOT_IN_AZURE = {
    "BRIDGE_QUEUE__CONNECTION_STRING": "the app reaches its queue by managed identity",
    "BRIDGE_DATAVERSE__CERTIFICATE_PASSWORD": "certificate files are not deployed; client secret",
}
#: Flex Consumption takes these from functionAppConfig and refuses them as app settings.
FLEX_DEPRECATED = (
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
)


@cache
def bicep() -> dict[str, Any]:
    return pycep.BicepParser().parse(file_path=APP_DIR / "infra" / "main.bicep")


def resource(name: str) -> dict[str, Any]:
    return bicep()["resources"][name]


def app_settings() -> dict[str, Any]:
    return resource("appSettings")["config"]["properties"]


def secret_settings(model: type[BaseModel] = Settings, path: tuple[str, ...] = ()) -> set[str]:
    """Every SecretStr in the settings, by variable name (a JSON list of models is one)."""
    found: set[str] = set()
    for name, field in model.model_fields.items():
        here = (*path, name)
        annotation = field.annotation
        args = typing.get_args(annotation)
        if annotation is SecretStr or SecretStr in args:
            found.add(env_name(here))
        elif typing.get_origin(annotation) is list:
            if any(issubclass(a, BaseModel) and secret_settings(a) for a in args):
                found.add(env_name(here))
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found |= secret_settings(annotation, here)
    return found


def test_the_bicep_file_parses() -> None:
    assert set(bicep()) >= {"parameters", "variables", "resources", "outputs"}


def test_a_flex_consumption_plan_runs_python_3_11_with_an_instance_cap() -> None:
    plan = resource("plan")["config"]
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    site = resource("site")["config"]
    assert site["kind"] == "functionapp,linux"
    assert site["identity"] == {"type": "SystemAssigned"}
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["scaleAndConcurrency"]["maximumInstanceCount"] == "maximumInstanceCount"
    assert config["deployment"]["storage"]["authentication"] == {"type": "SystemAssignedIdentity"}


def test_storage_is_used_by_identity_only() -> None:
    storage = resource("storage")["config"]["properties"]
    assert storage["allowSharedKeyAccess"] is False
    settings = app_settings()
    assert "AzureWebJobsStorage" not in settings  # no connection string anywhere
    assert "AzureWebJobsStorage__accountName" in settings
    assert "BRIDGE_QUEUE__ACCOUNT_URL" in settings


def test_every_secret_is_a_key_vault_reference() -> None:
    settings = app_settings()
    secrets = secret_settings()
    assert secrets >= set(NOT_IN_AZURE)
    for name in sorted(secrets - set(NOT_IN_AZURE)):
        assert str(settings.get(name, "")).startswith("@Microsoft.KeyVault("), name
    vault = resource("vault")["config"]["properties"]
    assert vault["enableRbacAuthorization"] is True


def test_the_identity_gets_its_roles_before_the_settings_that_need_them() -> None:
    roles = bicep()["variables"]["roles"]["value"]
    assert roles == {
        "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
        "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
        "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
    }
    assert resource("appSettings")["config"]["dependsOn"] == ["storageRoles", "vaultRole"]


def test_no_setting_flex_refuses() -> None:
    assert not set(app_settings()) & set(FLEX_DEPRECATED)


def test_the_queue_settings_match_the_queue_trigger_and_poison_queue() -> None:
    assert app_settings()["BRIDGE_QUEUE__NAME"] == "queueName"
    assert bicep()["parameters"]["queueName"]["default"] == "payment-events"


def test_application_insights_is_workspace_based() -> None:
    assert "WorkspaceResourceId" in resource("insights")["config"]["properties"]
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in app_settings()


def test_concurrency_against_one_app_user_stays_under_dataverses_limit() -> None:
    """maximumInstanceCount x min(batchSize + newBatchThreshold, processes x
    BRIDGE_DATAVERSE__MAX_CONCURRENCY) + one per timer job + one health probe <= 52."""
    host = json.loads((APP_DIR / "host.json").read_text())
    options = queue_host_options(host, {})
    parameters = bicep()["parameters"]
    bound = dataverse_concurrency(
        options,
        max_instances=parameters["maximumInstanceCount"]["default"],
        per_process_limit=parameters["dataverseMaxConcurrency"]["default"],
        timer_jobs=len(JOBS) + 1,  # + the health probe
    )
    assert bound == 4 * 8 + 3 + 1
    assert bound <= DATAVERSE_CONCURRENT_LIMIT


def test_host_json_sets_the_timeout_the_bundle_and_the_queue_trigger() -> None:
    host = json.loads((APP_DIR / "host.json").read_text())
    assert host["functionTimeout"] == "00:30:00"
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    queues = host["extensions"]["queues"]
    assert queues["messageEncoding"] == "base64"  # what the envelope writes
    assert "dynamicConcurrencyEnabled" not in host  # it would ignore batchSize
