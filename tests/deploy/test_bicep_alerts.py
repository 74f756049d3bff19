"""infra/main.bicep's alert rules and the console's App Service Authentication, read with
pycep-parser (syntax only): what each rule watches, its threshold, where it sends the alert,
and which paths stay open to callers that authenticate themselves."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from dynamics_bridge.app.jobs import run_poison
from dynamics_bridge.logs import JsonFormatter
from tests.deploy.test_infra import bicep, evaluate, resource

ACTION_GROUP = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ops"
    "/providers/microsoft.insights/actionGroups/bridge-oncall"
)
ALERTS = ("poisonAlert", "failedRunsAlert", "healthAlert")
#: What the poison timer logs while messages wait (customDimensions poison_waiting,
#: poison_oldest_minutes), in the JSON line dynamics_bridge.logs writes to traces.message.
POISON_LINE = "poison waiting: 4701 message(s), oldest 42 minutes"


def parameters(**given: Any) -> dict[str, Any]:
    env = {name: p.get("default") for name, p in bicep()["parameters"].items()}
    env.update(given)
    return env


def deployed(name: str, **given: Any) -> bool:
    """Whether the conditional resource ``name`` is deployed with these parameters."""
    return bool(evaluate(resource(name)["config"]["condition"], parameters(**given)))


def properties(name: str) -> dict[str, Any]:
    return resource(name)["config"]["config"]["properties"]


def criterion(name: str) -> dict[str, Any]:
    (only,) = properties(name)["criteria"]["allOf"]
    return only


def query(name: str) -> str:
    text = criterion(name)["query"]
    if isinstance(text, dict):  # format(<variable>, <parameter>...)
        call = text["function"]
        assert call["type"] == "format"
        args = [parameters()[a] for k, a in call["parameters"].items() if k != "format_string"]
        template = bicep()["variables"][call["parameters"]["format_string"]]["value"]
        return template.format(*args)
    return bicep()["variables"][text]["value"]


# --- which alerts exist --------------------------------------------------------------------


def test_without_an_action_group_no_alert_rule_is_made() -> None:
    assert bicep()["parameters"]["actionGroupId"]["default"] == ""
    for name in (*ALERTS, "healthTest"):
        assert not deployed(name), name
        assert not deployed(name, monitorHealth=True), name


def test_an_action_group_turns_on_the_log_alerts_and_the_health_alert_when_asked() -> None:
    assert deployed("poisonAlert", actionGroupId=ACTION_GROUP)
    assert deployed("failedRunsAlert", actionGroupId=ACTION_GROUP)
    # The health test needs the host key, which exists once the code is published.
    assert bicep()["parameters"]["monitorHealth"]["default"] is False
    assert not deployed("healthAlert", actionGroupId=ACTION_GROUP)
    assert deployed("healthTest", actionGroupId=ACTION_GROUP, monitorHealth=True)
    assert deployed("healthAlert", actionGroupId=ACTION_GROUP, monitorHealth=True)


def test_every_alert_notifies_the_given_action_group() -> None:
    env = parameters(actionGroupId=ACTION_GROUP)
    for name in ("poisonAlert", "failedRunsAlert"):
        actions = evaluate(properties(name)["actions"], env)
        assert actions == {"actionGroups": [ACTION_GROUP]}, name
    health = evaluate(properties("healthAlert")["actions"], env)
    assert health == [{"actionGroupId": ACTION_GROUP}]


def test_the_log_alerts_query_this_apps_application_insights() -> None:
    for name in ("poisonAlert", "failedRunsAlert"):
        config = resource(name)
        assert config["type"] == "Microsoft.Insights/scheduledQueryRules"
        assert config["api_version"] == "2023-12-01"
        assert config["config"]["config"]["kind"] == "LogAlert"
        (scope,) = properties(name)["scopes"]
        assert scope["operator"]["operands"] == {"operand_1": "insights", "operand_2": "id"}


# --- poison messages waiting ---------------------------------------------------------------


def test_poison_waiting_over_15_minutes_fires_on_any_such_log_line() -> None:
    assert bicep()["parameters"]["poisonAlertMinutes"]["default"] == 15
    text = query("poisonAlert")
    assert text.lstrip().startswith("traces")
    assert '"poison waiting"' in text
    assert "| where oldest_minutes > 15" in text
    assert "summarize" not in text  # over no rows it would return one and the count would fire
    rule = criterion("poisonAlert")
    assert (rule["timeAggregation"], rule["operator"], rule["threshold"]) == (
        "Count",
        "GreaterThan",
        0,
    )
    # Evaluated often enough to see each timer run's line inside the window.
    assert properties("poisonAlert")["evaluationFrequency"] == "PT15M"
    assert properties("poisonAlert")["windowSize"] == "PT30M"


def test_the_poison_query_reads_the_timers_fields_wherever_the_line_puts_them() -> None:
    """customDimensions first, then the JSON line in traces.message, then the text."""
    text = query("poisonAlert")
    for field in ("poison_waiting", "poison_oldest_minutes"):
        assert f"customDimensions.{field}" in text
        assert f"line.{field}" in text
    patterns = re.findall(r'extract\(@"([^"]+)", 1, message\)', text)
    assert len(patterns) == 2
    waiting, oldest = (re.search(p, POISON_LINE) for p in patterns)
    assert waiting is not None
    assert oldest is not None
    assert (waiting[1], oldest[1]) == ("4701", "42")


def test_the_poison_query_reads_the_line_the_poison_timer_really_writes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The timer's log record, formatted as the function app's handler formats it (JSON in
    traces.message): the query's filter, its JSON fields and its text fallback all find 42."""

    class Book:
        durable = True

        def absorb(self) -> int:
            return 0

        def waiting(self) -> tuple[int, datetime]:
            return 3, datetime.now(UTC) - timedelta(minutes=42, seconds=5)

    with caplog.at_level(logging.INFO):
        run_poison(SimpleNamespace(poison_book=Book()))  # type: ignore[arg-type]
    (record,) = [r for r in caplog.records if "poison waiting" in r.getMessage()]
    message = JsonFormatter().format(record)  # what Application Insights stores
    text = query("poisonAlert")
    needle = re.search(r'message has "([^"]+)"', text)
    assert needle is not None
    assert needle[1] in message
    line = json.loads(message)
    assert (line["poison_waiting"], line["poison_oldest_minutes"]) == (3, 42)
    waiting, oldest = re.findall(r'extract\(@"([^"]+)", 1, message\)', text)
    assert [re.findall(p, message) for p in (waiting, oldest)] == [["3"], ["42"]]


# --- failed function runs ------------------------------------------------------------------


def test_failed_runs_alert_counts_failed_requests_per_function_over_a_threshold() -> None:
    text = query("failedRunsAlert")
    assert text.lstrip().startswith("requests")
    assert "success == false" in text
    assert 'operation_Name != "health"' in text  # the health alert says why it is red
    assert "by operation_Name" in text
    rule = criterion("failedRunsAlert")
    assert rule["metricMeasureColumn"] == "failures"
    assert rule["timeAggregation"] == "Total"
    assert rule["operator"] == "GreaterThan"
    assert rule["threshold"] == "failedRunsThreshold"
    assert rule["dimensions"] == [
        {"name": "operation_Name", "operator": "Include", "values": ["*"]}
    ]
    assert bicep()["parameters"]["failedRunsThreshold"]["default"] == 5
    assert properties("failedRunsAlert")["windowSize"] == "PT15M"


# --- health red ----------------------------------------------------------------------------


def test_the_health_test_calls_api_health_with_the_function_key_and_expects_200() -> None:
    test = resource("healthTest")
    assert test["type"] == "Microsoft.Insights/webtests"
    assert test["config"]["config"]["kind"] == "standard"
    assert "'hidden-link:${insights.id}'" in test["config"]["config"]["tags"]
    props = properties("healthTest")
    assert props["Kind"] == "standard"
    request = props["Request"]
    assert request["RequestUrl"] == "https://${site.properties.defaultHostName}/api/health"
    assert request["HttpVerb"] == "GET"
    (header,) = request["Headers"]
    assert header["key"] == "x-functions-key"
    keys = header["value"]["operator"]["operands"]["operand_1"]["function"]
    assert keys["parameters"]["func_name"] == "listKeys"
    assert keys["parameters"]["resource_identifier"] == "${site.id}/host/default"
    assert props["ValidationRules"]["ExpectedHttpStatusCode"] == 200  # 503 = red
    loop = props["Locations"]["loop_type"]["detail"]
    assert loop["array_name"] == "healthTestLocations"
    assert props["Locations"]["config"] == {"Id": loop["item_name"]}
    assert len(parameters()["healthTestLocations"]) == 3  # the alert needs two to fail


def test_the_health_alert_fires_when_two_locations_see_it_red() -> None:
    alert = resource("healthAlert")
    assert alert["type"] == "Microsoft.Insights/metricAlerts"
    props = properties("healthAlert")
    criteria = props["criteria"]
    assert criteria["'odata.type'"] == "Microsoft.Azure.Monitor.WebtestLocationAvailabilityCriteria"
    assert criteria["webTestId"]["operator"]["operands"]["operand_1"] == "healthTest"
    assert criteria["componentId"]["operator"]["operands"]["operand_1"] == "insights"
    assert criteria["failedLocationCount"] == 2
    assert props["severity"] == 1


# --- App Service Authentication --------------------------------------------------------------


def excluded(path: str, patterns: list[str]) -> bool:
    """App Service's excludedPaths: an exact path, or a subtree with a trailing /*."""
    return any(path == p or (p.endswith("/*") and path.startswith(p[:-1])) for p in patterns)


def auth_settings(**given: Any) -> dict[str, Any]:
    return evaluate(properties("auth"), parameters(**given))


def test_authentication_is_set_up_only_with_an_entra_client_id() -> None:
    assert bicep()["parameters"]["consoleClientId"]["default"] == ""
    assert not deployed("auth")
    assert deployed("auth", consoleClientId="11111111-2222-3333-4444-555555555555")
    assert resource("auth")["config"]["config"]["name"] == "authsettingsV2"


def test_every_path_needs_an_entra_sign_in_by_the_allowed_group() -> None:
    client, group = "11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000"
    settings = auth_settings(consoleClientId=client, consoleAllowedGroupId=group)
    assert settings["platform"] == {"enabled": True}
    check = settings["globalValidation"]
    assert check["requireAuthentication"] is True
    assert check["unauthenticatedClientAction"] == "RedirectToLoginPage"
    entra = settings["identityProviders"]["azureActiveDirectory"]
    assert entra["enabled"] is True
    assert entra["registration"]["clientId"] == client
    assert entra["validation"]["defaultAuthorizationPolicy"] == {
        "allowedPrincipals": {"groups": [group]}
    }


def test_callers_that_authenticate_themselves_are_excluded_and_the_console_is_not(
    indexed: dict[str, Any],
) -> None:
    patterns = auth_settings(consoleClientId="x")["globalValidation"]["excludedPaths"]
    routes = {}
    for name, function in indexed.items():
        for binding in function.get_bindings():
            if binding.type == "httpTrigger":
                routes[name] = "/api/" + binding.route
    webhooks = {n: r for n, r in routes.items() if r.startswith("/api/webhooks/")}
    assert webhooks, routes
    for name, route in webhooks.items():
        assert excluded(route, patterns), name  # the provider signs; it cannot sign in
    assert excluded("/api/health", patterns)  # the availability test sends a function key
    assert excluded("/runtime/webhooks/blobs", patterns)  # Event Grid's Bankgirot deliveries
    others = {n: r for n, r in routes.items() if n not in webhooks and r != "/api/health"}
    assert "console" in others, routes
    for name, route in others.items():  # the console: signed-in members of the group only
        assert not excluded(re.sub(r"\{[^}]*\}", "page", route), patterns), name
    for path in ("/", "/api/console", "/api/console/poison", "/console", "/login"):
        assert not excluded(path, patterns), path


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/api/webhooks/swish", True), ("/api/webhooksx", False), ("/api/health/x", False)],
)
def test_the_exclusion_matcher_reads_trailing_wildcards_only(path: str, expected: bool) -> None:
    assert excluded(path, ["/api/webhooks/*", "/api/health"]) is expected


def test_the_console_trusts_easy_auth_and_lets_in_the_allowed_group_only_with_it() -> None:
    """Without App Service Authentication in front, anyone could send X-MS-CLIENT-PRINCIPAL:
    the app is told to trust it only when the template configures the sign-in."""
    group = "66666666-7777-8888-9999-000000000000"
    settings = evaluate(
        bicep()["variables"]["consoleSettings"]["value"],
        parameters(consoleClientId="x", consoleAllowedGroupId=group),
    )
    assert settings == {"BRIDGE_CONSOLE__AUTH": "easyauth", "BRIDGE_CONSOLE__ALLOWED_GROUPS": group}
    assert evaluate(bicep()["variables"]["consoleSettings"]["value"], parameters()) == {}
    assert (
        "consoleSettings"
        in resource("appSettings")["config"]["properties"]["function"]["parameters"].values()
    )
