"""A local stand-in for APSIS One: plain HTTP on 127.0.0.1, in-memory state, standard library only.

It answers the endpoints the bridge uses (reference apsis.md §1-§4): the OAuth token endpoint,
section definitions, profiles, v2 attributes, tags, events, Consent 2.0, delete and lock, and
the bulk import (create → pre-signed upload URL served here → status polling). Limits are
configurable and answered with 429 and ``Retry-After`` (in seconds, fractions allowed), so the
client's pacing and retries can be watched. The inspection methods (:meth:`ApsisStandIn.events`,
:meth:`~ApsisStandIn.profiles`, :meth:`~ApsisStandIn.attribute_updates`,
:meth:`~ApsisStandIn.summary` ...) are what the demo prints.

::

    with run_apsis_standin() as apsis:
        os.environ.update(apsis.env)      # BRIDGE_APSIS__* pointing at it
        ...
        apsis.event_counts()               # {"payment_confirmed": 3, ...}

Where APSIS's behaviour is not verified the stand-in picks one answer and says so here:
events for an unknown profile get 404; an empty CSV cell in an import leaves the attribute
as it was; the tag PATCH accepts only the configured ``tag_body_format``; success answers
carry no body except where the reference shows one. The event export (``POST
/audience/profiles/exports``, reference §3.7) answers 202 with ``{"poll_url": ...}``; the poll
URL answers 404 until the file is ready, then 200 with ``{"profiles": {<export key>:
{"sections": {<section>: {"attributes": {...}, "events": [{"event_time", "version_id",
"data"}]}}}}}`` (the layout APSIS documents for a single-profile export; the request's fields
and an event's fields in the file are our reading, not verified).

Chaos (:class:`ApsisChaos`): a share of API requests answered 429 or 503 before any work, and a
share of event POSTs stored and then answered 503 (the answer lost after the work), with a seed.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import hmac
import io
import json
import random
import re
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import unquote, urlsplit

from dynamics_bridge_sandbox.hosting import Answer, StandInServer

__all__ = [
    "Answer",
    "ApsisChaos",
    "ApsisLimits",
    "ApsisModel",
    "ApsisStandIn",
    "AttributeUpdate",
    "RecordedEvent",
    "default_model",
    "run_apsis_standin",
]

KEYSPACES = {
    "com.apsis1.keyspaces.email": "Email",
    "com.apsis1.keyspaces.mobile": "Mobile",
    "com.apsis1.keyspaces.crm-id": "CRM ID",
}
CHANNELS = ("com.apsis1.channels.email", "com.apsis1.channels.sms")


# -- the data model ---------------------------------------------------------------------------


def _version(discriminator: str, n: int = 1) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"apsis-standin:{discriminator}:{n}"))


@dataclass(frozen=True)
class AttributeDef:
    name: str
    discriminator: str
    type: str  # string | number | boolean | date

    @property
    def version_id(self) -> str:
        return _version(self.discriminator)


@dataclass(frozen=True)
class EventDef:
    name: str
    discriminator: str
    fields: tuple[str, ...]
    #: Older versions, deprecated: posting with one is refused.
    old_versions: int = 0

    @property
    def version_id(self) -> str:
        return _version(self.discriminator, self.old_versions + 1)


@dataclass
class ApsisModel:
    """One section's data model as an APSIS admin would have defined it in the UI."""

    section: str
    attributes: list[AttributeDef]
    events: list[EventDef]
    tags: dict[str, str]  # name -> discriminator
    topics: dict[str, str]  # name -> discriminator

    def attribute(self, discriminator: str) -> AttributeDef | None:
        return next((a for a in self.attributes if a.discriminator == discriminator), None)

    def attribute_by_version(self, version_id: str) -> AttributeDef | None:
        return next((a for a in self.attributes if a.version_id == version_id), None)

    def event_by_version(self, version_id: str) -> tuple[EventDef, bool] | None:
        """The event type and whether this version is the current one."""
        for event in self.events:
            versions = [_version(event.discriminator, n) for n in range(1, event.old_versions + 2)]
            if version_id in versions:
                return event, version_id == event.version_id
        return None


def default_model(suffix: str = "sbx01") -> ApsisModel:
    """A union's member section: the attributes, events, tags and topics the bridge writes."""
    custom = f"usercreated.attributes.{{}}-{suffix}"
    attributes = [
        AttributeDef("email", "com.apsis1.attributes.email", "string"),
        AttributeDef("firstname", "com.apsis1.attributes.firstname", "string"),
        AttributeDef("lastname", "com.apsis1.attributes.lastname", "string"),
        AttributeDef("crmid", "com.apsis1.attributes.crmid", "string"),
        *(
            AttributeDef(name, custom.format(name), kind)
            for name, kind in (
                ("member_number", "string"),
                ("membership_status", "string"),
                ("membership_type", "string"),
                ("membership_end", "date"),
                ("payment_method", "string"),
                ("payment_status", "string"),
                ("last_paid_on", "date"),
                ("paid_through", "date"),
                ("arrears", "number"),
                ("engagement_score", "number"),
                ("engagement_parts", "string"),
                ("industry", "string"),
                ("winback_candidate", "boolean"),
                ("member_since", "date"),
                ("segments", "string"),
                ("age_band", "string"),
                ("tenure_band", "string"),
                ("region", "string"),
                ("member_type", "string"),
                ("churn_risk", "number"),
                ("winback_theme", "string"),
            )
        ),
    ]
    payment = ("payment_id", "amount", "currency", "method", "member_number", "source_event_id")
    events = [
        EventDef(
            "payment_confirmed",
            f"com.apsis1.events.transaction.custom-payment-confirmed-{suffix}",
            payment,
            old_versions=1,
        ),
        EventDef(
            "payment_failed",
            f"com.apsis1.events.transaction.custom-payment-failed-{suffix}",
            (*payment, "reason", "reason_code", "fix_it"),
        ),
        EventDef(
            "refund",
            f"com.apsis1.events.transaction.custom-refund-{suffix}",
            (*payment, "reason"),
        ),
        EventDef(
            "invoice_overdue",
            f"com.apsis1.events.transaction.custom-invoice-overdue-{suffix}",
            (*payment, "fix_it"),
        ),
        *(
            EventDef(
                f"mandate_{state}",
                f"com.apsis1.events.signal.custom-mandate-{state}-{suffix}",
                ("member_number", "reason", "reason_code", "source_event_id"),
            )
            for state in ("approved", "cancelled", "rejected")
        ),
        EventDef(
            "welcome",
            f"com.apsis1.events.signal.custom-welcome-{suffix}",
            (
                "member_number",
                "method",
                "age_band",
                "region",
                "industry",
                "member_type",
                "text",
                "source_event_id",
            ),
        ),
        EventDef(
            "benefits_reminder",
            f"com.apsis1.events.signal.custom-benefits-reminder-{suffix}",
            ("member_number", "first_paid_on", "text", "source_event_id"),
        ),
        EventDef(
            "winback_nudge",
            f"com.apsis1.events.signal.custom-winback-nudge-{suffix}",
            ("member_number", "ended_on", "text", "theme", "theme_message", "source_event_id"),
        ),
        EventDef(
            "anniversary",
            f"com.apsis1.events.signal.custom-anniversary-{suffix}",
            ("member_number", "anniversary_on", "years", "text", "source_event_id"),
        ),
        EventDef(
            "birthday",
            f"com.apsis1.events.signal.custom-birthday-{suffix}",
            ("member_number", "birthday_on", "age", "member_type", "text", "source_event_id"),
        ),
        EventDef(
            "member_joined",
            f"com.apsis1.events.signal.custom-member-joined-{suffix}",
            ("member_number", "membership_type", "source_event_id"),
        ),
        EventDef(
            "membership_expiring",
            f"com.apsis1.events.signal.custom-membership-expiring-{suffix}",
            ("member_number", "valid_to", "method", "text", "source_event_id"),
        ),
        EventDef(
            "payment_reminder",
            f"com.apsis1.events.signal.custom-payment-reminder-{suffix}",
            ("member_number", "due_on", "amount", "currency", "method", "text", "source_event_id"),
        ),
    ]
    segments = ("onboarding", "at_risk", "lapsed", "engagement_high", "engagement_medium")
    methods = tuple(f"pays_{m}" for m in ("swish", "autogiro", "invoice", "efaktura", "bankgiro"))
    tags = {
        name: f"usercreated.tags.{name}-{suffix}"
        for name in (
            "winback",
            "arrears",
            "new_member",
            "autogiro",
            *segments,
            "engagement_low",
            "churn_risk_high",
            *methods,
        )
    }
    topics = {
        name: f"usercreated.topics.{name}-{suffix}" for name in ("newsletter", "member_offers")
    }
    return ApsisModel(f"usercreated.sections.members-{suffix}", attributes, events, tags, topics)


# -- limits -----------------------------------------------------------------------------------


@dataclass
class ApsisLimits:
    """APSIS's documented limits (apsis.md §4), each ``(requests, seconds)``; all configurable."""

    account: tuple[int, float] = (100, 1.0)
    profile: tuple[int, float] = (10, 1.0)
    token: tuple[int, float] = (10, 60.0)
    imports: tuple[int, float] = (10, 60.0)
    max_pending_imports: int = 3
    max_body_bytes: int = 100_000
    event_exports: tuple[int, float] = (1, 60.0)


@dataclass
class ApsisChaos:
    """Faults on API requests (not the token endpoint), drawn from one seeded generator:
    ``throttled`` answered 429 (``Retry-After`` = ``retry_after``) and ``unavailable`` 503,
    both before any work; ``stored_then_unavailable``: an event POST stored, then answered 503."""

    throttled: float = 0.0
    unavailable: float = 0.0
    stored_then_unavailable: float = 0.0
    retry_after: float = 0.05
    seed: int = 1


class _Window:
    """Requests admitted in the last ``seconds`` (a sliding log)."""

    def __init__(self, rate: tuple[int, float]) -> None:
        self.limit, self.seconds = rate
        self.seen: deque[float] = deque()

    def admit(self, now: float) -> float | None:
        """None when admitted, else the seconds until one more would be."""
        while self.seen and self.seen[0] <= now - self.seconds:
            self.seen.popleft()
        if len(self.seen) >= self.limit:
            return max(self.seen[0] + self.seconds - now, 0.001)
        self.seen.append(now)
        return None


# -- what the demo inspects -------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedEvent:
    key: str
    type: str  # our name for the event type
    discriminator: str
    event_time: str
    data: dict[str, Any]


@dataclass(frozen=True)
class AttributeUpdate:
    key: str
    values: dict[str, Any]  # attribute name -> value (None = cleared)
    via: str  # "api" or "import"


@dataclass
class _Profile:
    keyspace: str
    key: str
    attributes: dict[str, Any] = field(default_factory=dict)  # discriminator -> value
    tags: set[str] = field(default_factory=set)
    consents: dict[tuple[str, str], str] = field(default_factory=dict)  # (topic, channel)


@dataclass
class _Import:
    import_id: str
    keyspace: str
    field_selector: str
    mappings: dict[str, str]  # CSV column -> attribute discriminator
    update_existing: bool
    upload_fields: dict[str, str]
    status: str = "waiting_for_file"
    polls_left: int = 0
    rows: int = 0
    failed_rows: int = 0
    detail: str = ""
    #: What the file asks for, applied when a poll finds the import done.
    writes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class _Export:
    file: dict[str, Any]
    polls_left: int


def problem(status: int, title: str, detail: str = "", **headers: str) -> Answer:
    """An error in APSIS's problem-details shape (``title``, ``status``, ``detail``)."""
    body = {"title": title, "status": status}
    if detail:
        body["detail"] = detail
    return Answer(status, {k.replace("_", "-"): v for k, v in headers.items()}, body)


class _Fault:
    def __init__(self, status: int, times: int, retry_after: float | None, path: str) -> None:
        self.status, self.times, self.retry_after, self.path = status, times, retry_after, path


#: The API gateway's message for an expired token (apsis.md §1).
_EXPLICIT_DENY = "User is not authorized to access this resource with an explicit deny"
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


class ApsisStandIn:
    """The state and the request handling (no sockets: :func:`run_apsis_standin` serves it)."""

    def __init__(
        self,
        *,
        model: ApsisModel | None = None,
        limits: ApsisLimits | None = None,
        token_lifetime: int = 86400,
        expired_token_status: int = 401,
        tag_body_format: str = "add_remove",
        import_polls: int = 2,
        export_polls: int = 1,
        chaos: ApsisChaos | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> None:
        self.model = model or default_model()
        self.limits = limits or ApsisLimits()
        self.token_lifetime = token_lifetime
        self.expired_token_status = expired_token_status
        self.tag_body_format = tag_body_format
        self.import_polls = import_polls
        self.export_polls = export_polls
        self.chaos = chaos or ApsisChaos()
        self._rng = random.Random(self.chaos.seed)  # noqa: S311 - fault injection, not security
        #: Faults injected by :attr:`chaos`: throttled, unavailable, stored_then_unavailable.
        self.chaos_seen: Counter[str] = Counter()
        self._exports: dict[str, _Export] = {}
        self.clock = clock
        self.wall_clock = wall_clock
        self.url = "http://127.0.0.1"
        # Made up unless given: the CLI passes the ones it keeps so a restart changes nothing.
        self.client_id = client_id or str(uuid.uuid4())
        self.client_secret = client_secret or secrets.token_urlsafe(32)
        self._signing_key = secrets.token_bytes(32)
        self._tokens: dict[str, float] = {}  # token -> exp (wall clock)
        self._profiles: dict[tuple[str, str], _Profile] = {}
        self._locked: set[tuple[str, str]] = set()
        self._events: list[RecordedEvent] = []
        self._updates: list[AttributeUpdate] = []
        self._erasures: list[tuple[str, str]] = []
        self._imports: dict[str, _Import] = {}
        self._faults: list[_Fault] = []
        self._account = _Window(self.limits.account)
        self._token_window = _Window(self.limits.token)
        self._import_window = _Window(self.limits.imports)
        self._export_window = _Window(self.limits.event_exports)
        self._per_profile: dict[str, _Window] = {}
        self._lock = threading.RLock()
        #: 429s answered, by which limit: account, profile, token, imports, pending_imports.
        self.throttled: Counter[str] = Counter()
        #: Requests by route name (``POST events`` ...), faults and 429s included.
        self.requests: Counter[str] = Counter()
        self.tokens_issued = 0

    # -- settings for the bridge ---------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """The BRIDGE_APSIS__* settings that point the bridge at this stand-in."""
        m = self.model
        return {
            "BRIDGE_APSIS__BASE_URL": self.url,
            "BRIDGE_APSIS__CLIENT_ID": self.client_id,
            "BRIDGE_APSIS__CLIENT_SECRET": self.client_secret,
            "BRIDGE_APSIS__KEYSPACE": "com.apsis1.keyspaces.crm-id",
            "BRIDGE_APSIS__SECTION": m.section,
            "BRIDGE_APSIS__TAG_BODY_FORMAT": self.tag_body_format,
            "BRIDGE_APSIS__ATTRIBUTES": json.dumps({a.name: a.discriminator for a in m.attributes}),
            "BRIDGE_APSIS__EVENT_TYPES": json.dumps({e.name: e.discriminator for e in m.events}),
            "BRIDGE_APSIS__TAGS": json.dumps(m.tags),
            "BRIDGE_APSIS__TOPICS": json.dumps(m.topics),
        }

    # -- controls for tests and the demo -------------------------------------------------------

    def expire_tokens(self) -> None:
        """Every token issued so far is now expired (the next call gets 401, or 403)."""
        with self._lock:
            self._tokens.clear()

    def fail_next(
        self, status: int, *, times: int = 1, retry_after: float | None = None, path: str = ""
    ) -> None:
        """Answer the next ``times`` API requests (whose path contains ``path``) with ``status``."""
        with self._lock:
            self._faults.append(_Fault(status, times, retry_after, path))

    def forget_profile(self, key: str) -> None:
        """The profile is gone as if someone deleted it in APSIS's UI (the bridge not told)."""
        with self._lock:
            for slot in [s for s, p in self._profiles.items() if p.key == key]:
                del self._profiles[slot]

    # -- inspection ----------------------------------------------------------------------------

    def profiles(self) -> dict[str, dict[str, Any]]:
        """Every profile by key: attributes and consents by our names, tags sorted."""
        with self._lock:
            return {p.key: self._view(p) for p in self._profiles.values()}

    def profile(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            found = next((p for p in self._profiles.values() if p.key == key), None)
            return self._view(found) if found else None

    def events(self, type: str | None = None, key: str | None = None) -> list[RecordedEvent]:
        """Events received, in order, optionally of one type (our name) or for one profile."""
        with self._lock:
            return [
                e
                for e in self._events
                if (type is None or e.type == type) and (key is None or e.key == key)
            ]

    def event_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(e.type for e in self._events))

    def attribute_updates(self, key: str | None = None) -> list[AttributeUpdate]:
        with self._lock:
            return [u for u in self._updates if key is None or u.key == key]

    def tag_counts(self) -> dict[str, int]:
        """Profiles per tag: the size of each tag-based segment."""
        names = {d: n for n, d in self.model.tags.items()}
        with self._lock:
            return dict(Counter(names[t] for p in self._profiles.values() for t in p.tags))

    def attribute_counts(self, name: str) -> dict[Any, int]:
        """Profiles per value of one attribute (``membership_status`` → {"active": 12, ...})."""
        disc = next(a.discriminator for a in self.model.attributes if a.name == name)
        with self._lock:
            return dict(
                Counter(p.attributes[disc] for p in self._profiles.values() if disc in p.attributes)
            )

    def erasures(self) -> list[tuple[str, str]]:
        """``(key, "delete" | "lock")`` in order."""
        with self._lock:
            return list(self._erasures)

    def imports(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"import_id": i.import_id, "status": i.status, "rows": i.rows}
                for i in self._imports.values()
            ]

    def summary(self) -> dict[str, Any]:
        """Counts the demo prints (also served at ``GET /_sandbox/summary``)."""
        with self._lock:
            return {
                "profiles": len(self._profiles),
                "events": self.event_counts(),
                "attribute_updates": len(self._updates),
                "tags": self.tag_counts(),
                "erasures": len(self._erasures),
                "imports": self.imports(),
                "tokens_issued": self.tokens_issued,
                "throttled": dict(self.throttled),
                "requests": dict(self.requests),
                "chaos": dict(self.chaos_seen),
            }

    def _view(self, p: _Profile) -> dict[str, Any]:
        attr_names = {a.discriminator: a.name for a in self.model.attributes}
        tag_names = {d: n for n, d in self.model.tags.items()}
        topic_names = {d: n for n, d in self.model.topics.items()}
        return {
            "keyspace": p.keyspace,
            "attributes": {attr_names[d]: v for d, v in p.attributes.items()},
            "tags": sorted(tag_names[t] for t in p.tags),
            "consents": {
                f"{topic_names[t]}/{c.rsplit('.', 1)[-1]}": kind
                for (t, c), kind in p.consents.items()
            },
        }

    # -- tokens --------------------------------------------------------------------------------

    def _issue_token(self) -> dict[str, Any]:
        now = self.wall_clock()
        exp = int(now + self.token_lifetime)
        claims = {"sub": self.client_id, "iat": int(now), "exp": exp, "jti": uuid.uuid4().hex}

        def b64(raw: bytes) -> str:
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")

        head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = b64(json.dumps(claims).encode())
        signature = hmac.new(self._signing_key, f"{head}.{body}".encode(), hashlib.sha256)
        token = f"{head}.{body}.{b64(signature.digest())}"
        self._tokens[token] = exp
        self.tokens_issued += 1
        return {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}

    def _token_answer(self, body: bytes) -> Answer:
        if (wait := self._token_window.admit(self.clock())) is not None:
            self.throttled["token"] += 1
            return problem(429, "Too many requests", "token endpoint: 10/min", Retry_After=_s(wait))
        try:
            form = json.loads(body or b"null")
        except ValueError:
            return problem(400, "Bad request", "the body must be JSON")
        if not isinstance(form, dict) or form.get("grant_type") != "client_credentials":
            return problem(400, "Bad request", "grant_type must be client_credentials")
        good_id = hmac.compare_digest(str(form.get("client_id", "")), self.client_id)
        good_secret = hmac.compare_digest(str(form.get("client_secret", "")), self.client_secret)
        if not (good_id and good_secret):
            return problem(401, "Unauthorized", "invalid client credentials")
        return Answer(200, body=self._issue_token())

    def _authorised(self, headers: dict[str, str]) -> Answer | None:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        exp = self._tokens.get(token)
        if exp is not None and exp > self.wall_clock():
            return None
        if self.expired_token_status == 403 and token:
            # The API gateway's shape for an expired token (apsis.md §1).
            return Answer(
                403,
                body={"message": _EXPLICIT_DENY},
            )
        return problem(401, "Unauthorized", "missing, invalid or expired access token")

    # -- dispatch ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """One HTTP request → one answer; header names are matched lower-case."""
        segments = [unquote(s) for s in urlsplit(path).path.split("/")[1:]]
        with self._lock:
            if segments == ["oauth", "token"] and method == "POST":
                self.requests["POST token"] += 1
                return self._token_answer(body)
            if segments == ["_sandbox", "summary"] and method == "GET":
                return Answer(200, body=self.summary())
            if len(segments) == 2 and segments[0] == "_uploads" and method == "POST":
                self.requests["POST upload"] += 1
                return self._upload(segments[1], headers, body)
            route = self._route(method, segments, body)
            self.requests[route[0] if route else f"{method} (unknown)"] += 1
            if (denied := self._authorised(headers)) is not None:
                return denied
            if (fault := self._fault(path)) is not None:
                return fault
            if route is None:
                return problem(404, "Not found", f"no such resource: {method} {path}")
            name, run, profile_key = route
            if (chaos := self._chaos_before()) is not None:
                return chaos
            if (limited := self._limit(profile_key)) is not None:
                return limited
            if len(body) > self.limits.max_body_bytes:
                return problem(413, "Payload too large", f"at most {self.limits.max_body_bytes}")
            answer = run(headers, body)
            if (
                name == "POST events"
                and answer.status < 300
                and self._rng.random() < self.chaos.stored_then_unavailable
            ):
                self.chaos_seen["stored_then_unavailable"] += 1
                return problem(503, "Service unavailable", "stored, but the answer was lost")
            return answer

    def _chaos_before(self) -> Answer | None:
        """A 429 or a 503 before any work, as often as :attr:`chaos` says."""
        draw = self._rng.random()
        if draw < self.chaos.throttled:
            self.chaos_seen["throttled"] += 1
            return problem(
                429, "Too many requests", "injected", Retry_After=_s(self.chaos.retry_after)
            )
        if draw < self.chaos.throttled + self.chaos.unavailable:
            self.chaos_seen["unavailable"] += 1
            return problem(503, "Service unavailable", "injected, before any work")
        return None

    def _fault(self, raw_path: str) -> Answer | None:
        for fault in self._faults:
            if fault.path in raw_path and fault.times > 0:
                fault.times -= 1
                extra = {} if fault.retry_after is None else {"Retry_After": _s(fault.retry_after)}
                return problem(fault.status, "Injected fault", "sandbox fail_next", **extra)
        return None

    def _limit(self, profile_key: str | None) -> Answer | None:
        now = self.clock()
        if (wait := self._account.admit(now)) is not None:
            self.throttled["account"] += 1
            return problem(429, "Too many requests", "account limit", Retry_After=_s(wait))
        if profile_key is not None:
            window = self._per_profile.setdefault(profile_key, _Window(self.limits.profile))
            if (wait := window.admit(now)) is not None:
                self.throttled["profile"] += 1
                return problem(429, "Too many requests", "profile key limit", Retry_After=_s(wait))
        return None

    def _route(
        self, method: str, s: list[str], body: bytes
    ) -> tuple[str, Callable[[dict[str, str], bytes], Answer], str | None] | None:
        """``(name, run, profile key)`` for an API request, or None when nothing matches."""
        n = len(s)
        if s[:1] == ["v2"]:
            v2, s, n = True, s[1:], n - 1
        else:
            v2 = False
        if n < 2 or s[0] != "audience":
            return None
        if not v2 and s[1:] == ["keyspaces"] and method == "GET":
            return "GET keyspaces", lambda h, b: self._keyspaces(), None
        if not v2 and s[1:] == ["sections"] and method == "GET":
            return "GET sections", lambda h, b: self._sections(), None
        if n == 4 and s[1] == "sections" and method == "GET":
            section, kind = s[2], s[3]
            if (kind in ("attributes", "events", "tags") and not v2) or (kind == "topics" and v2):
                return f"GET {kind}", lambda h, b: self._definitions(section, kind), None
        if not v2 and s[1:] == ["profiles", "exports"] and method == "POST":
            return "POST exports", lambda h, b: self._create_export(b), None
        if not v2 and n == 4 and s[1:3] == ["profiles", "exports"] and method == "GET":
            export_id = s[3]
            return "GET export", lambda h, b: self._poll_export(export_id), None
        if n == 4 and v2 and s[1] == "sections" and s[3] == "imports" and method == "POST":
            section = s[2]
            return "POST imports", lambda h, b: self._create_import(section, b), None
        if n == 5 and not v2 and s[1] == "sections" and s[3] == "imports" and method == "GET":
            section, import_id = s[2], s[4]
            return "GET import", lambda h, b: self._import_status(section, import_id), None
        if s[1] != "keyspaces" or n < 4:
            return None
        ks = s[2]
        if n == 6 and not v2 and s[3] == "sections" and s[5] == "profiles" and method == "POST":
            section = s[4]
            key = _json_field(body, "profile_key")
            return "POST profiles", lambda h, b: self._create_profile(ks, section, b), key
        if s[3] != "profiles" or n < 5:
            return None
        key = s[4]
        if n == 5 and not v2 and method == "DELETE":
            return "DELETE profile", lambda h, b: self._erase(ks, key, "delete"), key
        if n == 6 and not v2 and s[5] == "locks" and method == "PUT":
            return "PUT lock", lambda h, b: self._erase(ks, key, "lock"), key
        if n != 8 or s[5] != "sections":
            return None
        section, what = s[6], s[7]
        table: dict[tuple[bool, str, str], Callable[[dict[str, str], bytes], Answer]] = {
            (True, "attributes", "PATCH"): lambda h, b: self._patch_attributes(ks, key, h, b),
            (True, "attributes", "GET"): lambda h, b: self._get_attributes(ks, key),
            (False, "tags", "PATCH"): lambda h, b: self._patch_tags(ks, key, h, b),
            (False, "tags", "GET"): lambda h, b: self._get_tags(ks, key),
            (False, "events", "POST"): lambda h, b: self._post_events(ks, key, b),
            (True, "consents", "POST"): lambda h, b: self._post_consent(ks, key, b),
            (True, "consents", "GET"): lambda h, b: self._get_consents(ks, key),
        }
        run = table.get((v2, what, method))
        if run is None:
            return None
        if section != self.model.section:
            return f"{method} {what}", lambda h, b: _no_section(section), key
        return f"{method} {what}", run, key

    # -- definitions ---------------------------------------------------------------------------

    def _keyspaces(self) -> Answer:
        items = [
            {"discriminator": d, "name": n, "manage_subscriptions": True}
            for d, n in KEYSPACES.items()
        ]
        return Answer(200, body={"items": items})

    def _sections(self) -> Answer:
        return Answer(
            200, body={"items": [{"discriminator": self.model.section, "name": "Members"}]}
        )

    def _definitions(self, section: str, kind: str) -> Answer:
        if section != self.model.section:
            return _no_section(section)
        m = self.model
        if kind == "attributes":
            items = [
                {
                    "discriminator": a.discriminator,
                    "name": a.name,
                    "type": a.type,
                    "versions": [{"id": a.version_id, "deprecated_at": None}],
                }
                for a in m.attributes
            ]
        elif kind == "events":
            items = [
                {
                    "discriminator": e.discriminator,
                    "name": e.name,
                    "versions": [
                        {
                            "id": _version(e.discriminator, n),
                            "deprecated_at": None if n == e.old_versions + 1 else "2024-01-01",
                            "fields": list(e.fields),
                        }
                        for n in range(1, e.old_versions + 2)
                    ],
                }
                for e in m.events
            ]
        else:
            source = m.tags if kind == "tags" else m.topics
            items = [{"discriminator": d, "name": n} for n, d in source.items()]
        return Answer(200, body={"items": items})

    # -- profiles ------------------------------------------------------------------------------

    def _create_profile(self, ks: str, section: str, body: bytes) -> Answer:
        if ks not in KEYSPACES:
            return problem(404, "Not found", f"keyspace {ks}")
        if section != self.model.section:
            return _no_section(section)
        key = _json_field(body, "profile_key")
        if not key:
            return problem(400, "Bad request", "profile_key is required")
        if (ks, key) in self._locked:
            return problem(410, "Gone", "the profile is locked")
        if (ks, key) in self._profiles:
            return problem(409, "Conflict", "the profile already exists")
        self._profiles[(ks, key)] = _Profile(ks, key)
        return Answer(201)

    def _existing(self, ks: str, key: str) -> _Profile | Answer:
        if (ks, key) in self._locked:
            return problem(410, "Gone", "the profile is locked")
        found = self._profiles.get((ks, key))
        return found if found else problem(404, "Not found", "no such profile")

    def _merge_patch(
        self, ks: str, key: str, headers: dict[str, str], body: bytes, keyed_by: str
    ) -> tuple[_Profile, dict[str, Any]] | Answer:
        """The profile and the JSON object of a merge-patch on it, or the refusal APSIS gives."""
        if "merge-patch+json" not in headers.get("content-type", ""):
            return problem(415, "Unsupported media type", "use application/merge-patch+json")
        profile = self._existing(ks, key)
        if isinstance(profile, Answer):
            return profile
        patch = _json(body)
        if not isinstance(patch, dict):
            return problem(400, "Bad request", f"a JSON object keyed by {keyed_by} discriminator")
        return profile, patch

    def _patch_attributes(self, ks: str, key: str, headers: dict[str, str], body: bytes) -> Answer:
        given = self._merge_patch(ks, key, headers, body, "attribute")
        if isinstance(given, Answer):
            return given
        profile, patch = given
        for disc, value in patch.items():
            attribute = self.model.attribute(disc)
            if attribute is None:
                return problem(400, "Bad request", f"unknown attribute {disc}")
            if value is not None and not _fits(attribute.type, value):
                return problem(400, "Bad request", f"{disc} takes a {attribute.type}")
        self._apply(profile, patch, "api")
        return Answer(204)

    def _apply(self, profile: _Profile, values: dict[str, Any], via: str) -> None:
        for disc, value in values.items():
            if value is None:
                profile.attributes.pop(disc, None)
            else:
                profile.attributes[disc] = value
        names = {a.discriminator: a.name for a in self.model.attributes}
        self._updates.append(
            AttributeUpdate(profile.key, {names[d]: v for d, v in values.items()}, via)
        )

    def _get_attributes(self, ks: str, key: str) -> Answer:
        profile = self._existing(ks, key)
        return (
            profile if isinstance(profile, Answer) else Answer(200, body=dict(profile.attributes))
        )

    def _patch_tags(self, ks: str, key: str, headers: dict[str, str], body: bytes) -> Answer:
        given = self._merge_patch(ks, key, headers, body, "tag")
        if isinstance(given, Answer):
            return given
        profile, patch = given
        on, off = {
            "add_remove": ("add", "remove"),
            "boolean": (True, False),
            "true_null": (True, None),
        }[self.tag_body_format]
        known = set(self.model.tags.values())
        for disc, value in patch.items():
            if disc not in known:
                return problem(400, "Bad request", f"unknown tag {disc}")
            if not (value is on or value is off or (isinstance(on, str) and value in (on, off))):
                return problem(400, "Bad request", f"tag values are {on!r} or {off!r}")
        for disc, value in patch.items():
            if value is on or value == on:
                profile.tags.add(disc)
            else:
                profile.tags.discard(disc)
        return Answer(204)

    def _get_tags(self, ks: str, key: str) -> Answer:
        profile = self._existing(ks, key)
        if isinstance(profile, Answer):
            return profile
        return Answer(200, body={"items": [{"discriminator": t} for t in sorted(profile.tags)]})

    def _post_events(self, ks: str, key: str, body: bytes) -> Answer:
        profile = self._existing(ks, key)
        if isinstance(profile, Answer):
            return profile
        payload = _json(body)
        items = payload.get("items") if isinstance(payload, dict) else None
        if not isinstance(items, list) or not items:
            return problem(400, "Bad request", 'a body {"items": [...]} with at least one event')
        accepted = []
        for n, item in enumerate(items):
            if not isinstance(item, dict):
                return problem(400, "Bad request", f"items[{n}] is not an object")
            found = self.model.event_by_version(str(item.get("version_id")))
            if found is None:
                return problem(400, "Bad request", f"items[{n}].version_id is unknown")
            event, current = found
            if not current:
                return problem(400, "Bad request", f"items[{n}].version_id is deprecated")
            when = item.get("event_time")
            if not isinstance(when, str) or not _RFC3339.fullmatch(when):
                return problem(400, "Bad request", f"items[{n}].event_time is not RFC 3339")
            data = item.get("data", {})
            if not isinstance(data, dict):
                return problem(400, "Bad request", f"items[{n}].data is not an object")
            if unknown := sorted(set(data) - set(event.fields)):
                return problem(400, "Bad request", f"items[{n}].data: unknown fields {unknown}")
            accepted.append(RecordedEvent(profile.key, event.name, event.discriminator, when, data))
        self._events.extend(accepted)
        return Answer(204)

    def _post_consent(self, ks: str, key: str, body: bytes) -> Answer:
        profile = self._existing(ks, key)
        if isinstance(profile, Answer):
            return profile
        consent = _json(body)
        if not isinstance(consent, dict):
            return problem(400, "Bad request", "a JSON object")
        topic = consent.get("topic_discriminator")
        channel = consent.get("channel_discriminator")
        kind = consent.get("type")
        if topic not in self.model.topics.values():
            return problem(400, "Bad request", f"unknown topic {topic}")
        if channel not in CHANNELS:
            return problem(400, "Bad request", f"unknown channel {channel}")
        if kind not in ("opt-in", "opt-out"):
            return problem(400, "Bad request", "only opt-in and opt-out can be set by the API")
        slot = (str(topic), str(channel))
        before = profile.consents.get(slot)
        if before == kind:
            return problem(409, "Conflict", f"the consent already is {kind}")
        profile.consents[slot] = str(kind)
        return Answer(201 if before is None else 204)

    def _get_consents(self, ks: str, key: str) -> Answer:
        profile = self._existing(ks, key)
        if isinstance(profile, Answer):
            return profile
        items = [
            {"topic_discriminator": t, "channel_discriminator": c, "type": kind}
            for (t, c), kind in profile.consents.items()
        ]
        return Answer(200, body={"items": items})

    def _erase(self, ks: str, key: str, mode: str) -> Answer:
        existed = self._profiles.pop((ks, key), None) is not None
        if mode == "lock":
            self._locked.add((ks, key))
        elif not existed:
            return problem(404, "Not found", "no such profile")
        self._events = [e for e in self._events if e.key != key]
        self._erasures.append((key, mode))
        return Answer(204)

    # -- event export (what the trigger sweep reads back) -------------------------------------

    def _create_export(self, body: bytes) -> Answer:
        if (wait := self._export_window.admit(self.clock())) is not None:
            self.throttled["event_exports"] += 1
            return problem(429, "Too many requests", "event exports", Retry_After=_s(wait))
        spec = _json(body)
        if not isinstance(spec, dict):
            return problem(400, "Bad request", "a JSON object")
        section = spec.get("section_discriminator")
        if section != self.model.section:
            return _no_section(str(section))
        attributes = spec.get("attributes")
        if not isinstance(attributes, list) or not attributes:
            return problem(400, "Bad request", "attributes: at least one (else no profile shows)")
        if unknown := [a for a in attributes if self.model.attribute(str(a)) is None]:
            return problem(400, "Bad request", f"attributes: unknown {unknown}")
        wanted = spec.get("events")
        known = {e.discriminator: e for e in self.model.events}
        if not isinstance(wanted, list) or any(w not in known for w in wanted):
            return problem(400, "Bad request", "events: a list of event discriminators")
        try:
            start = _instant(spec["start_at"])
            end = _instant(spec.get("end_at") or "") if spec.get("end_at") else None
        except (KeyError, TypeError, ValueError):
            return problem(400, "Bad request", "start_at (mandatory) and end_at: RFC 3339")
        end = end or start + timedelta(days=7)  # APSIS: one week after start_at by default
        profiles: dict[str, Any] = {}
        for event in self._events:
            if event.discriminator not in wanted:
                continue
            if not start <= _instant(event.event_time) < end:
                continue
            export_key = str(uuid.uuid5(uuid.NAMESPACE_URL, f"apsis-standin:export:{event.key}"))
            profile = next((p for p in self._profiles.values() if p.key == event.key), None)
            slot = profiles.setdefault(
                export_key,
                {
                    "sections": {
                        self.model.section: {
                            "attributes": {
                                a: (profile.attributes.get(a) if profile else None)
                                for a in attributes
                            },
                            "events": [],
                        }
                    }
                },
            )
            slot["sections"][self.model.section]["events"].append(
                {
                    "event_time": event.event_time,
                    "version_id": known[event.discriminator].version_id,
                    "data": dict(event.data),
                }
            )
        export_id = str(uuid.uuid4())
        self._exports[export_id] = _Export({"profiles": profiles}, self.export_polls)
        return Answer(202, body={"poll_url": f"{self.url}/audience/profiles/exports/{export_id}"})

    def _poll_export(self, export_id: str) -> Answer:
        export = self._exports.get(export_id)
        if export is None:
            return problem(410, "Gone", "no such export, or it expired")
        if export.polls_left > 0:
            export.polls_left -= 1
            return problem(404, "Not found", "the export is not ready yet")
        return Answer(200, body=export.file)

    # -- bulk import ---------------------------------------------------------------------------

    def _create_import(self, section: str, body: bytes) -> Answer:
        if section != self.model.section:
            return _no_section(section)
        pending = sum(1 for i in self._imports.values() if i.status not in ("completed", "error"))
        if pending >= self.limits.max_pending_imports:
            self.throttled["pending_imports"] += 1
            return problem(429, "Too many requests", "too many pending imports", Retry_After="1")
        if (wait := self._import_window.admit(self.clock())) is not None:
            self.throttled["imports"] += 1
            return problem(429, "Too many requests", "imports: 10/min", Retry_After=_s(wait))
        spec = _json(body)
        mapping = spec.get("keyspace_mapping") if isinstance(spec, dict) else None
        if not isinstance(mapping, dict) or mapping.get("keyspace_discriminator") not in KEYSPACES:
            return problem(400, "Bad request", "keyspace_mapping.keyspace_discriminator is unknown")
        if not mapping.get("field_selector"):
            return problem(400, "Bad request", "keyspace_mapping.field_selector is required")
        columns: dict[str, str] = {}
        for n, m in enumerate(spec.get("attribute_mappings") or []):
            attribute = self.model.attribute_by_version(str(m.get("attribute_version_id")))
            if attribute is None or not m.get("field_selector"):
                return problem(400, "Bad request", f"attribute_mappings[{n}] is not valid")
            columns[str(m["field_selector"])] = attribute.discriminator
        options = spec.get("options") or {}
        import_id = str(uuid.uuid4())
        fields = {
            "key": f"imports/{import_id}.csv",
            "policy": base64.b64encode(f"upload {import_id}".encode()).decode(),
            "x-amz-algorithm": "AWS4-HMAC-SHA256",
            "x-amz-credential": "SANDBOX/20250314/eu-west-1/s3/aws4_request",
            "x-amz-date": "20250314T000000Z",
        }
        fields["x-amz-signature"] = hmac.new(
            self._signing_key, fields["policy"].encode(), hashlib.sha256
        ).hexdigest()
        self._imports[import_id] = _Import(
            import_id,
            str(mapping["keyspace_discriminator"]),
            str(mapping["field_selector"]),
            columns,
            bool(options.get("update_existing_profiles", True)),
            fields,
        )
        expires = datetime.fromtimestamp(self.wall_clock(), UTC) + timedelta(hours=1)
        return Answer(
            201,
            body={
                "import_id": import_id,
                "file_upload_url": f"{self.url}/_uploads/{import_id}",
                "file_upload_body": fields,
                "file_upload_url_expires_at": expires.isoformat().replace("+00:00", "Z"),
            },
        )

    def _upload(self, import_id: str, headers: dict[str, str], body: bytes) -> Answer:
        """The pre-signed form upload: every issued field must come back unchanged, no token."""
        job = self._imports.get(import_id)
        if job is None or job.status != "waiting_for_file":
            return problem(403, "Forbidden", "no upload is expected at this URL")
        if "authorization" in headers:
            return problem(400, "Bad request", "a pre-signed upload takes no Authorization")
        content_type = headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return problem(400, "Bad request", "a multipart/form-data upload is expected")
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        form: dict[str, bytes] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            form[str(name)] = payload if isinstance(payload, bytes) else b""
        for name, value in job.upload_fields.items():
            if form.get(name, b"").decode() != value:
                return problem(403, "Forbidden", f"form field {name} is missing or altered")
        if "file" not in form:
            return problem(400, "Bad request", "the form has no file")
        job.status, job.polls_left = "queued", self.import_polls
        self._process(job, form["file"])
        return Answer(204)

    def _process(self, job: _Import, data: bytes) -> None:
        try:
            rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
        except (UnicodeDecodeError, csv.Error) as exc:
            job.detail = f"unreadable CSV: {exc}"
            return
        writes: list[tuple[str, dict[str, Any]]] = []
        for row in rows:
            key = (row.get(job.field_selector) or "").strip()
            values: dict[str, Any] = {}
            bad = not key or (job.keyspace, key) in self._locked
            for column, disc in job.mappings.items():
                cell = row.get(column) or ""
                if cell == "":
                    continue  # an empty cell leaves the attribute as it was
                attribute = self.model.attribute(disc)
                assert attribute is not None
                value = _from_csv(attribute.type, cell)
                if value is None:
                    bad = True
                values[disc] = value
            if bad:
                job.failed_rows += 1
            else:
                writes.append((key, values))
        job.rows = len(rows)
        job.writes = writes

    def _import_status(self, section: str, import_id: str) -> Answer:
        if section != self.model.section:
            return _no_section(section)
        job = self._imports.get(import_id)
        if job is None:
            return problem(404, "Not found", "no such import")
        if job.status in ("queued", "in_progress"):
            if job.polls_left > 0:
                job.polls_left -= 1
                job.status = "in_progress"
            else:
                self._finish(job)
        result = {"status": job.status, "rows": job.rows, "failed_rows": job.failed_rows}
        if job.detail:
            result["detail"] = job.detail
        return Answer(200, body={"import_id": job.import_id, "result": result})

    def _finish(self, job: _Import) -> None:
        if job.detail:
            job.status = "error"
            return
        for key, values in job.writes:
            profile = self._profiles.get((job.keyspace, key))
            if profile is None:
                profile = self._profiles[(job.keyspace, key)] = _Profile(job.keyspace, key)
            elif not job.update_existing:
                continue
            if values:
                self._apply(profile, values, "import")
        job.status = "completed"


# -- helpers ----------------------------------------------------------------------------------


def _s(seconds: float) -> str:
    return f"{seconds:.3f}"


def _instant(text: Any) -> datetime:
    """An RFC 3339 time as an aware datetime; ValueError otherwise."""
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        raise ValueError("not RFC 3339")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError:
        return None


def _json_field(body: bytes, name: str) -> str | None:
    parsed = _json(body)
    value = parsed.get(name) if isinstance(parsed, dict) else None
    return value if isinstance(value, str) and value else None


def _no_section(section: str) -> Answer:
    return problem(404, "Not found", f"no section {section}")


def _fits(kind: str, value: Any) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "date":
        try:
            date.fromisoformat(value)
        except (TypeError, ValueError):
            return False
        return True
    return isinstance(value, str)


def _from_csv(kind: str, cell: str) -> Any:
    """A CSV cell as the attribute's type; None when it does not parse."""
    if kind == "boolean":
        return {"true": True, "false": False}.get(cell.strip().lower())
    if kind == "number":
        try:
            number = float(cell)
        except ValueError:
            return None
        return int(number) if number.is_integer() else number
    if kind == "date":
        return cell if _fits("date", cell) else None
    return cell


# -- serving ----------------------------------------------------------------------------------


@contextlib.contextmanager
def run_apsis_standin(port: int = 0, **options: Any) -> Iterator[ApsisStandIn]:
    """The stand-in on ``http://127.0.0.1:<port>`` (a free port by default) until the block ends.

    ``options`` go to :class:`ApsisStandIn` (``limits=ApsisLimits(...)``, ``model=...``,
    ``token_lifetime=...``, ``expired_token_status=403``, ``tag_body_format=...``,
    ``client_id=...``, ``client_secret=...``).
    """
    with StandInServer(name="apsis", port=port) as server:
        standin = ApsisStandIn(**options)
        standin.url = server.url
        server.start(standin.handle)
        yield standin


if __name__ == "__main__":  # pragma: no cover - manual use: python -m dynamics_bridge_sandbox.apsis
    with run_apsis_standin() as running:
        for name, value in running.env.items():
            print(f"export {name}='{value}'")
        print(f"# APSIS stand-in on {running.url}; Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
