from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
import requests
import responses

from dynamics_bridge.apsis.auth import TokenCache
from dynamics_bridge.apsis.client import ApsisClient
from dynamics_bridge.settings import ApsisSettings
from tests.apsis.fakes import FakeTime

BASE = "https://api.apsis.one"
TOKEN_URL = f"{BASE}/oauth/token"
KEYSPACE = "com.apsis1.keyspaces.crm-id"
SECTION = "usercreated.sections.members-x1y2"


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    """HTTP mocked with ``responses``; nothing leaves the process."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def token_endpoint(api: responses.RequestsMock) -> responses.BaseResponse:
    """The token endpoint handing out tok-1, tok-2, ... (one per request)."""
    counter = itertools.count(1)

    def grant(request):
        return 200, {}, f'{{"access_token": "tok-{next(counter)}", "expires_in": 86400}}'

    return api.add_callback(responses.POST, TOKEN_URL, callback=grant)


@pytest.fixture
def make_client(fake_time: FakeTime) -> Callable[..., ApsisClient]:
    def make(**kw) -> ApsisClient:
        session = requests.Session()
        tokens = TokenCache(
            session,
            BASE,
            "key-id",
            "key-secret",
            wall_clock=fake_time,
            clock=fake_time,
            sleep=fake_time.sleep,
        )
        options = {
            "base_url": BASE,
            "keyspace": KEYSPACE,
            "section": SECTION,
            "account_rate": (100, 1.0),
            "profile_rate": (10, 1.0),
            "import_rate": (10, 60.0),
            "max_attempts": 4,
            "import_poll_seconds": 5.0,
            **kw,
        }
        settings = ApsisSettings.model_validate(options)
        return ApsisClient(settings, session, tokens, clock=fake_time, sleep=fake_time.sleep)

    return make


@pytest.fixture
def client(make_client, token_endpoint) -> ApsisClient:
    return make_client()
