"""The demo's own callbacks pass the same verification real ones do."""

from __future__ import annotations

from dynamics_bridge_sandbox.demo.callbacks import billogram_callbacks, swish_callbacks

from dynamics_bridge.settings import BillogramSettings, SwishSettings
from dynamics_bridge.sources import billogram, swish


def test_generated_swish_callbacks_parse_to_one_event_each() -> None:
    callbacks = list(swish_callbacks(["100001", "100002", "100003", "100004"]))
    kinds = [swish.parse_callback(c.body, SwishSettings()).events[0].kind for c in callbacks]
    assert kinds == ["payment.succeeded"] * 3 + ["payment.failed", "payment.refunded"]


def test_generated_billogram_callbacks_are_signed_with_the_given_key() -> None:
    settings = BillogramSettings(sign_key="k")
    for callback in billogram_callbacks(["100001", "100002"], "k"):
        billogram.authenticate(callback.body, callback.headers, settings)


def test_the_same_seed_gives_the_same_callbacks() -> None:
    first = [c.body for c in swish_callbacks(["1", "2"], seed=3)]
    assert first == [c.body for c in swish_callbacks(["1", "2"], seed=3)]
    assert first != [c.body for c in swish_callbacks(["1", "2"], seed=4)]
