"""infra/main.bicep, read with pycep-parser (syntax only: no types, no API-version checks), and
host.json against Dataverse's concurrency limit."""

from __future__ import annotations

import json
import re
import typing
from functools import cache
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from dynamics_bridge.app.jobs import DATAVERSE_JOBS, JOBS
from dynamics_bridge.hosting import (
    DATAVERSE_CONCURRENT_LIMIT,
    dataverse_concurrency,
    queue_host_options,
)
from dynamics_bridge.settings import Settings, WebhookSettings, env_name
from tests.deploy.conftest import APP_DIR

pycep = pytest.importorskip("pycep", reason="pycep-parser is a dev dependency")

#: Secret settings that are deliberately not in Azure, and why.
NOT_IN_AZURE = {
    "BRIDGE_QUEUE__CONNECTION_STRING": "the app reaches its queue by managed identity",
    "BRIDGE_OPS__CONNECTION_STRING": "run history too, at BRIDGE_OPS__ACCOUNT_URL",
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


def union_arguments() -> list[str]:
    """The names union() merges into the app settings, in order (later ones win)."""
    call = resource("appSettings")["config"]["properties"]["function"]
    assert call["type"] == "union"
    return list(call["parameters"].values())


def setting_parts() -> dict[str, tuple[Any, dict[str, Any]]]:
    """Each variable union() merges → (its condition or None, the settings it may add)."""
    parts: dict[str, tuple[Any, dict[str, Any]]] = {}
    for name in union_arguments():
        if name in bicep()["parameters"]:
            continue  # extraAppSettings
        value = bicep()["variables"][name]["value"]
        if isinstance(value, dict) and "operator" in value:
            operands = value["operator"]["operands"]
            assert {} in (operands["true_value"], operands["false_value"]), name
            settings = operands["true_value"] or operands["false_value"]
            parts[name] = (operands, settings)
        else:
            parts[name] = (None, value)
    return parts


def app_settings() -> dict[str, Any]:
    """Every app setting the template can write (both sides of each condition)."""
    merged: dict[str, Any] = {}
    for _, settings in setting_parts().values():
        merged.update(settings)
    return merged


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
    assert settings["BRIDGE_OPS__BACKEND"] == "tables"  # run history outlives a worker
    assert "BRIDGE_OPS__ACCOUNT_URL" in settings


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
        timer_jobs=len(DATAVERSE_JOBS) + 1,  # + the health probe
    )
    assert set(JOBS) >= DATAVERSE_JOBS
    assert bound == 4 * 8 + 5 + 1  # five Dataverse timer jobs, retention the fifth
    assert bound <= DATAVERSE_CONCURRENT_LIMIT


def test_host_json_sets_the_timeout_the_bundle_and_the_queue_trigger() -> None:
    host = json.loads((APP_DIR / "host.json").read_text())
    assert host["functionTimeout"] == "00:30:00"
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    queues = host["extensions"]["queues"]
    assert queues["messageEncoding"] == "base64"  # what the envelope writes
    assert "dynamicConcurrencyEnabled" not in host  # it would ignore batchSize


def test_settings_a_union_adds_itself_survive_a_redeploy_and_the_template_wins() -> None:
    """The template replaces all app settings: extraAppSettings carries the union's own
    (OCR scheme, member reference pattern...), first in union() so a template key wins."""
    assert bicep()["parameters"]["extraAppSettings"]["type"] == "object"
    assert bicep()["parameters"]["extraAppSettings"]["default"] == {}
    assert union_arguments()[0] == "extraAppSettings"


def test_the_unions_own_bankgiro_numbers_are_deployment_parameters() -> None:
    """Without them every Bankgirot file is refused; a redeploy must not drop them."""
    settings = app_settings()
    assert settings["BRIDGE_BANKGIROT__PAYEE_BANKGIROS"] == "bankgirotPayeeBankgiros"
    assert settings["BRIDGE_BANKGIROT__CUSTOMER_NUMBERS"] == "bankgirotCustomerNumbers"
    parameters = bicep()["parameters"]
    assert parameters["bankgirotPayeeBankgiros"]["default"] == ""  # empty = unset = refused
    assert "refused" in parameters["bankgirotPayeeBankgiros"]["decorators"][0]["argument"]


def test_the_host_stops_bodies_over_the_webhook_limit_before_python_reads_them() -> None:
    """The worker gets a body the host has buffered whole (up to 100 MB by default)."""
    assert app_settings()["FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"] == {
        "function": {"type": "string", "parameters": {"value_to_convert": "httpBodyLimitBytes"}}
    }
    limit = bicep()["parameters"]["httpBodyLimitBytes"]["default"]
    assert limit == WebhookSettings().max_body_bytes


def condition_of(part: str) -> Any:
    operands, _ = setting_parts()[part]
    return operands["condition"] if operands else None


def test_optional_parts_write_no_settings_and_no_key_vault_reference_unless_used() -> None:
    """A reference that cannot resolve makes the app refuse to load its settings, and an empty
    value means unset: so APSIS, SPAR and further app users add settings only when used."""
    (core_condition, core) = setting_parts()["coreSettings"]
    assert core_condition is None
    assert not [k for k in core if k.startswith(("BRIDGE_SPAR__", "BRIDGE_APSIS__"))]
    assert "BRIDGE_DATAVERSE__APP_USERS" not in core
    empty = {"function": {"type": "empty", "parameters": {"item_to_test": "sparEndpoint"}}}
    assert condition_of("sparSettings") == empty
    assert setting_parts()["sparSettings"][0]["true_value"] == {}  # empty endpoint: nothing
    assert condition_of("apsisSettings")["function"]["parameters"] == {
        "item_to_test": "apsisClientId"
    }
    assert setting_parts()["apsisSettings"][0]["true_value"] == {}
    assert condition_of("appUserSettings") == "dataverseAppUsersInVault"
    assert bicep()["parameters"]["dataverseAppUsersInVault"]["default"] is False
    ca = condition_of("sparCaSettings")["operator"]
    assert ca["type"] == "and"
    assert ca["operands"]["operand_1"] == "sparPinCa"


def test_spar_gets_its_contract_path_and_its_certificate_from_the_vault() -> None:
    spar = setting_parts()["sparSettings"][1]
    assert spar["BRIDGE_SPAR__WSDL_PATH"] == "sparWsdlPath"
    assert spar["BRIDGE_SPAR__SCHEMA_ROOT"] == "sparSchemaRoot"
    for name in ("BRIDGE_SPAR__CLIENT_CERT_PEM", "BRIDGE_SPAR__CLIENT_KEY_PEM"):
        assert spar[name].startswith("@Microsoft.KeyVault("), name
    assert "BRIDGE_SPAR__CLIENT_CERT" not in spar  # no file paths in Azure


def test_the_referenced_secrets_output_lists_every_reference_the_settings_make() -> None:
    secrets = bicep()["variables"]["secrets"]["value"]
    referenced = {
        secrets[name] for name, value in app_settings().items() if "KeyVault(" in str(value)
    }
    listed = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            operator = node.get("operator", {})
            if operator.get("type") == "property_accessor":
                listed.add(secrets[operator["operands"]["operand_2"]])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(bicep()["outputs"]["referencedSecretNames"]["value"])
    assert listed == referenced == set(secrets.values())


def evaluate_name(variable: str, app_name: str, suffix: str = "a1b2c3d4e5f6g") -> str:
    """A name variable's interpolated string, with Bicep's take/toLower/replace."""
    functions = {
        "take": lambda text, n: text[:n],
        "toLower": str.lower,
        "replace": lambda text, old, new: text.replace(old, new),
    }
    names = {**functions, "appName": app_name, "suffix": suffix}
    template = bicep()["variables"][variable]["value"]
    return re.sub(r"\$\{([^}]*)\}", lambda m: str(eval(m[1], {}, names)), template)


@pytest.mark.parametrize("length", [3, 7, 8, 9, 10, 19, 20, 21, 24])
@pytest.mark.parametrize("hyphens", [False, True])
def test_vault_and_storage_names_are_valid_and_keep_the_whole_unique_suffix(
    length: int, hyphens: bool
) -> None:
    assert bicep()["variables"]["suffix"]["value"]["function"]["type"] == "unique_string"
    suffix = "a1b2c3d4e5f6g"  # uniqueString: 13 lower-case letters and digits
    app = ("Bridge-" if hyphens else "Bridgeunion") + "x" * 24
    app = app[:length]
    vault = evaluate_name("vaultName", app, suffix)
    storage = evaluate_name("storageName", app, suffix)
    assert re.fullmatch(r"[a-zA-Z](?:[a-zA-Z0-9]|-(?!-)){1,22}[a-zA-Z0-9]", vault), vault
    assert re.fullmatch(r"[a-z0-9]{3,24}", storage), storage
    assert vault.endswith(suffix)
    assert storage.endswith(suffix)


# --- inbound access restrictions ------------------------------------------------------------


def evaluate(node: Any, env: dict[str, Any]) -> Any:
    """A Bicep expression as pycep parses it, for the few forms the access rules use."""
    if isinstance(node, str):
        if node in env:
            return env[node]
        if node in bicep()["variables"]:
            return evaluate(bicep()["variables"][node]["value"], env)
        return re.sub(r"\$\{([^}]*)\}", lambda m: str(env[m[1]]), node)
    if isinstance(node, list):
        return [evaluate(item, env) for item in node]
    if not isinstance(node, dict):
        return node
    if "loop_type" in node:
        detail = node["loop_type"]["detail"]
        items = evaluate(detail["array_name"], env)
        return [
            evaluate(node["config"], {**env, detail["item_name"]: item, detail["index_name"]: i})
            for i, item in enumerate(items)
        ]
    if "operator" in node:
        kind, operands = node["operator"]["type"], node["operator"]["operands"]
        if kind == "conditional":
            branch = "true_value" if evaluate(operands["condition"], env) else "false_value"
            return evaluate(operands[branch], env)
        if kind == "not":
            return not evaluate(operands["bool_value"], env)
        if kind == "and":
            return evaluate(operands["operand_1"], env) and evaluate(operands["operand_2"], env)
        if kind == "add":
            return evaluate(operands["operand_1"], env) + evaluate(operands["operand_2"], env)
        raise NotImplementedError(kind)
    if "function" in node:
        kind, parameters = node["function"]["type"], node["function"]["parameters"]
        if kind == "empty":
            return not evaluate(parameters["item_to_test"], env)
        if kind == "concat":
            return [item for arg in parameters.values() for item in evaluate(arg, env)]
        raise NotImplementedError(kind)
    return {key: evaluate(value, env) for key, value in node.items()}


def site_config(**parameters: Any) -> dict[str, Any]:
    """The site's siteConfig with the given parameters (the others at their defaults)."""
    env = {name: p.get("default") for name, p in bicep()["parameters"].items()}
    env.update(parameters)
    config = resource("site")["config"]["properties"]["siteConfig"]
    keys = ("ipSecurityRestrictions", "ipSecurityRestrictionsDefaultAction")
    return {key: evaluate(config[key], env) for key in (*keys, "scmIpSecurityRestrictionsUseMain")}


SWISH_LIKE = ["203.0.113.0/24", "198.51.100.7/32"]  # documentation ranges (RFC 5737)


def test_the_app_stays_open_to_the_internet_unless_it_restricts_inbound_addresses() -> None:
    parameters = bicep()["parameters"]
    assert parameters["webhookAllowedCidrs"]["type"] == "array"
    assert parameters["webhookAllowedCidrs"]["default"] == []
    assert site_config() == {
        "ipSecurityRestrictions": [],
        "ipSecurityRestrictionsDefaultAction": "Allow",
        "scmIpSecurityRestrictionsUseMain": False,
    }


def test_given_ranges_are_the_only_senders_allowed_and_everything_else_is_denied() -> None:
    config = site_config(webhookAllowedCidrs=SWISH_LIKE)
    assert config["ipSecurityRestrictionsDefaultAction"] == "Deny"
    senders = [r for r in config["ipSecurityRestrictions"] if "tag" not in r]
    assert [(r["ipAddress"], r["action"]) for r in senders] == [(c, "Allow") for c in SWISH_LIKE]


def test_a_restricted_app_still_gets_bankgirot_files_from_event_grid() -> None:
    """The site-wide restriction also covers /runtime/webhooks/blobs, where Event Grid delivers
    the blob events of the Bankgirot function: its service tag is allowed."""
    rules = site_config(webhookAllowedCidrs=SWISH_LIKE)["ipSecurityRestrictions"]
    (event_grid,) = [r for r in rules if r.get("tag") == "ServiceTag"]
    assert (event_grid["ipAddress"], event_grid["action"]) == ("AzureEventGrid", "Allow")


def test_admin_ranges_are_allowed_too_and_only_when_the_app_is_restricted() -> None:
    admin = ["192.0.2.0/28"]
    rules = site_config(webhookAllowedCidrs=SWISH_LIKE, adminAllowedCidrs=admin)[
        "ipSecurityRestrictions"
    ]
    assert [r["ipAddress"] for r in rules] == [*SWISH_LIKE, *admin, "AzureEventGrid"]
    assert site_config(adminAllowedCidrs=admin)["ipSecurityRestrictions"] == []


def test_rule_priorities_and_names_are_unique_at_the_largest_lists_allowed() -> None:
    parameters = bicep()["parameters"]
    most = {
        name: next(
            d["argument"] for d in parameters[name]["decorators"] if d["type"] == "max_length"
        )
        for name in ("webhookAllowedCidrs", "adminAllowedCidrs")
    }
    rules = site_config(
        webhookAllowedCidrs=[f"10.0.{i}.0/24" for i in range(most["webhookAllowedCidrs"])],
        adminAllowedCidrs=[f"10.1.{i}.0/24" for i in range(most["adminAllowedCidrs"])],
    )["ipSecurityRestrictions"]
    priorities = [r["priority"] for r in rules]
    assert priorities == sorted(set(priorities))  # senders, then admins, then Event Grid
    assert len({r["name"] for r in rules}) == len(rules)


def test_deployments_are_restricted_only_when_asked() -> None:
    assert bicep()["parameters"]["restrictDeploymentsToo"]["default"] is False
    assert not site_config(webhookAllowedCidrs=SWISH_LIKE)["scmIpSecurityRestrictionsUseMain"]
    assert site_config(webhookAllowedCidrs=SWISH_LIKE, restrictDeploymentsToo=True)[
        "scmIpSecurityRestrictionsUseMain"
    ]
    assert not site_config(restrictDeploymentsToo=True)["scmIpSecurityRestrictionsUseMain"]
