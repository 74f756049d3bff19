"""The token cache: one shared token per API key, renewed before expiry, paced at 10/min."""

from __future__ import annotations

import threading

import pytest
import requests
import responses
from pydantic import SecretStr
from responses import matchers

from dynamics_bridge.apsis.auth import TokenCache, shared_token_cache, token_expiry
from dynamics_bridge.errors import AuthError, ConfigError
from dynamics_bridge.settings import ApsisSettings
from tests.apsis.fakes import FakeTime, jwt

BASE = "https://api.apsis.one"
TOKEN_URL = f"{BASE}/oauth/token"
CLIENT_ID = "b49b39a0-82a1-11ec-8017-5d554e8551d6"
SECRET = "4n0TpfkaedYOkIljy0mtAs4Y2r2qR5XGrBhpt20Cf3LYaE45piAPunlVAq4jbJBV"


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def make_cache(fake_time: FakeTime, **kw) -> TokenCache:
    return TokenCache(
        requests.Session(),
        BASE,
        CLIENT_ID,
        SECRET,
        wall_clock=fake_time,
        clock=fake_time,
        sleep=fake_time.sleep,
        **kw,
    )


def grant(token: str = "tok-1", expires_in: int | None = 86400) -> dict:
    body: dict = {"access_token": token, "token_type": "Bearer"}
    if expires_in is not None:
        body["expires_in"] = expires_in
    return body


@responses.activate
def test_the_token_request_is_a_json_client_credentials_grant(fake_time) -> None:
    responses.post(
        TOKEN_URL,
        json=grant(),
        match=[
            matchers.json_params_matcher(
                {
                    "grant_type": "client_credentials",
                    "client_id": CLIENT_ID,
                    "client_secret": SECRET,
                }
            ),
            matchers.header_matcher({"Content-Type": "application/json"}),
        ],
    )
    assert make_cache(fake_time).token() == "tok-1"


@responses.activate
def test_the_token_is_fetched_once_and_reused(fake_time) -> None:
    call = responses.post(TOKEN_URL, json=grant())
    cache = make_cache(fake_time)
    assert cache.token() == cache.token() == "tok-1"
    assert call.call_count == 1


def test_expiry_comes_from_the_jwt_exp_claim_before_expires_in() -> None:
    assert token_expiry(jwt(exp=5000), 86400, now=1000) == 5000


def test_expiry_falls_back_to_expires_in_for_an_opaque_token() -> None:
    assert token_expiry("opaque", 86400, now=1000) == 87400


def test_a_token_with_no_lifetime_is_assumed_short_lived() -> None:
    assert token_expiry("opaque", None, now=1000) == 1300


@responses.activate
def test_the_token_is_renewed_a_margin_before_its_exp(fake_time) -> None:
    responses.post(TOKEN_URL, json=grant(jwt(exp=fake_time.now + 10_000)))
    second = responses.post(TOKEN_URL, json=grant("tok-2"))
    cache = make_cache(fake_time, renew_margin=3600)
    cache.token()
    fake_time.now += 6399
    cache.token()
    assert second.call_count == 0
    fake_time.now += 1
    assert cache.token() == "tok-2"


@responses.activate
def test_a_margin_longer_than_half_the_life_is_cut_to_half(fake_time) -> None:
    responses.post(TOKEN_URL, json=grant("tok-1", expires_in=600))
    second = responses.post(TOKEN_URL, json=grant("tok-2"))
    cache = make_cache(fake_time, renew_margin=3600)
    cache.token()
    fake_time.now += 299
    assert cache.token() == "tok-1"
    fake_time.now += 1
    assert cache.token() == "tok-2"
    assert second.call_count == 1


@responses.activate
def test_invalidating_the_current_token_fetches_a_new_one(fake_time) -> None:
    responses.post(TOKEN_URL, json=grant("tok-1"))
    responses.post(TOKEN_URL, json=grant("tok-2"))
    cache = make_cache(fake_time)
    cache.invalidate(cache.token())
    assert cache.token() == "tok-2"


@responses.activate
def test_a_stale_rejection_does_not_drop_a_token_another_worker_already_renewed(
    fake_time,
) -> None:
    call = responses.post(TOKEN_URL, json=grant("tok-2"))
    cache = make_cache(fake_time)
    cache.token()
    cache.invalidate("tok-1")  # an older token that a slow worker saw rejected
    assert cache.token() == "tok-2"
    assert call.call_count == 1


@responses.activate
def test_concurrent_workers_share_one_token_request(fake_time) -> None:
    workers = 8
    entered = threading.Semaphore(0)

    def slow_grant(request):
        for _ in range(workers - 1):  # answer only once every worker is asking
            entered.acquire(timeout=5)
        return 200, {}, '{"access_token": "shared", "expires_in": 86400}'

    responses.add_callback(responses.POST, TOKEN_URL, callback=slow_grant)
    cache = make_cache(fake_time)
    tokens: list[str] = []

    def work() -> None:
        entered.release()
        tokens.append(cache.token())

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tokens == ["shared"] * workers
    assert cache.fetches == 1


@responses.activate
def test_a_429_from_the_token_endpoint_waits_retry_after_and_tries_again(fake_time) -> None:
    responses.post(TOKEN_URL, status=429, headers={"Retry-After": "2"})
    responses.post(TOKEN_URL, json=grant())
    assert make_cache(fake_time).token() == "tok-1"
    assert fake_time.slept == [2.0]


@responses.activate
def test_a_429_without_a_hint_backs_off_exponentially(fake_time) -> None:
    for _ in range(3):
        responses.post(TOKEN_URL, status=429)
    responses.post(TOKEN_URL, json=grant())
    make_cache(fake_time).token()
    assert len(fake_time.slept) == 3
    assert fake_time.slept[0] < fake_time.slept[1] < fake_time.slept[2]


@responses.activate
def test_an_unreachable_token_endpoint_is_retried(fake_time) -> None:
    responses.post(TOKEN_URL, body=requests.ConnectionError("refused"))
    responses.post(TOKEN_URL, json=grant())
    assert make_cache(fake_time).token() == "tok-1"


@responses.activate
def test_refused_credentials_are_an_auth_error_that_names_the_key_but_not_the_secret(
    fake_time,
) -> None:
    call = responses.post(
        TOKEN_URL,
        status=401,
        json={"title": "Unauthorized", "status": 401, "detail": f"bad secret {SECRET}"},
    )
    with pytest.raises(AuthError) as caught:
        make_cache(fake_time).token()
    assert CLIENT_ID in str(caught.value)
    assert SECRET not in str(caught.value)
    assert call.call_count == 1


@responses.activate
def test_a_200_without_a_token_is_an_auth_error(fake_time) -> None:
    responses.post(TOKEN_URL, json={"token_type": "Bearer"})
    with pytest.raises(AuthError, match="access_token"):
        make_cache(fake_time).token()


@responses.activate
def test_the_token_endpoint_is_paced_to_ten_requests_a_minute(fake_time) -> None:
    responses.post(TOKEN_URL, json=grant())
    cache = make_cache(fake_time)
    start = fake_time.now
    for _ in range(10):
        cache.invalidate(cache.token())
    assert fake_time.slept == []
    cache.token()
    assert fake_time.now == pytest.approx(start + 60)


def test_the_cache_never_shows_its_secret(fake_time) -> None:
    assert SECRET not in repr(make_cache(fake_time))


def test_one_cache_is_shared_per_api_key_in_the_process() -> None:
    settings = ApsisSettings(client_id="shared-key", client_secret=SecretStr("s1"), section="s")
    other = ApsisSettings(client_id="other-key", client_secret=SecretStr("s1"), section="s")
    session = requests.Session()
    first = shared_token_cache(settings, session)
    assert shared_token_cache(settings.model_copy(), session) is first
    assert shared_token_cache(other, session) is not first


def test_a_shared_cache_needs_credentials() -> None:
    with pytest.raises(ConfigError, match="BRIDGE_APSIS__CLIENT_ID"):
        shared_token_cache(ApsisSettings(section="s"), requests.Session())
