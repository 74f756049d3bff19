"""/api/health: the retention model's state, where the union has turned the analytics on."""

from __future__ import annotations

from dynamics_bridge.app.health import check_health
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.ops.artifacts import MemoryArtifacts
from dynamics_bridge.settings import load_settings


def test_retention_is_not_reported_while_it_is_off() -> None:
    body = check_health(Services(load_settings(), artifacts=MemoryArtifacts()), {}).body
    assert "retention" not in body["checks"]


def test_retention_says_why_no_model_is_used_and_when_one_is() -> None:
    artifacts = MemoryArtifacts()
    services = Services(load_settings(retention={"enabled": True}), artifacts=artifacts)
    assert check_health(services, {}).body["checks"]["retention"] == {
        "ok": False,
        "model": None,
        "used": False,
        "why": "no churn model trained yet",
    }
    artifacts.put("churn", b"m", {"used": False, "why": "does not beat the baseline: ..."})
    checks = check_health(services, {}).body["checks"]
    assert checks["retention"]["ok"] is False
    assert checks["retention"]["why"].startswith("does not beat the baseline")
    artifacts.put("churn", b"m", {"used": True, "trained_on": "2026-11-30", "roc_auc": 0.68})
    checks = check_health(services, {}).body["checks"]
    assert (checks["retention"]["ok"], checks["retention"]["model"]) == (True, "v00002")
