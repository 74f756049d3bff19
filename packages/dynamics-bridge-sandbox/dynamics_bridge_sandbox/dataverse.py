"""A local Dataverse: the Web API subset dynamics_bridge uses, on SQLite, with Dataverse's answers.

Implements (reference dataverse.md): rows by set and by alternate key, ``$select``, ``$filter``
(``eq``, ``ne``, ``lt``/``le``/``gt``/``ge``, ``startswith``, ``and``,
``Microsoft.Dynamics.CRM.In``), ``createdon`` set on create and ``modifiedon`` on every write
(where the table has them), the standard task, team, queue and queue item tables with their
binds checked (:data:`STANDARD_NAVIGATIONS`), paging by ``odata.maxpagesize`` and
``@odata.nextLink``, create / create-only / update-only / upsert with ETags, ``@odata.bind`` by
alternate key, ``$batch`` with atomic change sets, ``continue-on-error`` and ``Content-ID``
references inside a change set (``PATCH $1``, ``"nav@odata.bind": "$1"``), change tracking with
deletions, metadata reads (``EntityDefinitions`` list, one table with ``$expand=Attributes,Keys``
and no option sets, choice options only through the cast
``.../Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata``), metadata writes (tables,
columns, keys, lookups as ``RelationshipDefinitions``, ``InsertOptionValue``), and the
service-protection limit with its own budget per app user (429 + Retry-After). Pure request →
response: :mod:`.server` puts it on a socket.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlencode

from dynamics_bridge.dataverse.batch import (
    BatchPart,
    BatchRequest,
    ChangeSet,
    operations,
    parse_batch_request,
    render_batch_response,
)
from dynamics_bridge_sandbox.hosting import Answer, Headers

__all__ = ["Answer", "DataverseSandbox", "Limits"]

API = "/api/data/v9.2/"
_KEY = re.compile(r"^(?P<set>[A-Za-z_][\w]*)\((?P<key>.*)\)$")
_MULTIPLE = re.compile(
    r"^(?P<set>\w+)/Microsoft\.Dynamics\.CRM\.(?P<action>Create|Upsert)Multiple$"
)
_PAIR = re.compile(r"(\w+)=('(?:[^']|'')*'|[^,]+)")
_IN = re.compile(r"Microsoft\.Dynamics\.CRM\.In\(PropertyName='(\w+)',PropertyValues=\[(.*)\]\)")
_EQ = re.compile(r"^(\w+) eq ('(?:[^']|'')*'|[\w.-]+)$")
_STRING = re.compile(r"'((?:[^']|'')*)'")
_COMPARE = re.compile(r"^(\w+) (lt|le|gt|ge|ne) ('(?:[^']|'')*'|[\w.:+-]+)$")
_STARTSWITH = re.compile(r"^startswith\((\w+),\s*'((?:[^']|'')*)'\)$")
#: A lookup column's value property (``_mbr_member_value``): safe to name in SQL.
_LOOKUP_VALUE = re.compile(r"_[a-z0-9_]+_value")


class Failure(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.answer = Answer(
            status,
            {"Content-Type": "application/json; odata.metadata=minimal"},
            {"error": {"code": code, "message": message}},
        )


@dataclass(frozen=True)
class Refusal:
    """A service-protection 429: which facet, Dataverse's code and message, and Retry-After."""

    code: str
    message: str
    retry_after: float  # real seconds


#: What injected chaos does to one request.
Chaos = Literal["fault", "reset_before", "reset_after", "slow"]


@dataclass
class Limits:
    """Service protection per app user in a sliding window (dataverse.md §5), and injected chaos.

    Three facets, as Dataverse counts them: requests (a ``$batch`` is one), combined execution
    time (a ``$batch`` counts all of its operations) and requests in flight. Concurrency is
    refused at once; the other two are detected after the fact, as in Dataverse. Times given
    here are Dataverse's (window, execution budget); ``time_scale`` compresses them, so with
    ``time_scale=60`` a 300 s window passes in 5 real seconds and a request given 0.1 real
    seconds of latency has used 6 s of the execution budget.
    """

    requests_per_window: int = 6000
    execution_ms_per_window: int = 1_200_000
    max_concurrent: int = 52
    window_seconds: float = 300.0
    time_scale: float = 1.0
    latency_seconds: float = 0.0  # real seconds added to every API request
    latency_per_operation_seconds: float = 0.0  # real seconds per operation inside a request
    fault_rate: float = 0.0  # share of requests answered 503
    reset_rate: float = 0.0  # share of connections dropped; half of them after the work is done
    slow_rate: float = 0.0  # share of requests held back by slow_seconds
    slow_seconds: float = 1.0
    fault_seed: int = 0  # the same chaos on every run, so a test cannot pass by luck
    clock: Callable[[], float] = time.monotonic
    throttled: Counter[str] = field(default_factory=Counter)  # 429s by Dataverse error code
    throttled_by_user: Counter[str] = field(default_factory=Counter)  # 429s by app user
    chaos_seen: Counter[str] = field(default_factory=Counter)
    #: Per app user, the (real) arrival time of every request, and (time, Retry-After) of every
    #: 429: what a test needs to see that a client honoured Retry-After (the last 100,000 each).
    arrivals: dict[str, deque[float]] = field(default_factory=dict)
    refusals: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)
    _requests: dict[str, deque[float]] = field(default_factory=dict)
    _executions: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)
    _in_flight: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.fault_seed)  # noqa: S311 - test chaos, not security

    def chaos(self) -> Chaos | None:
        """What, if anything, goes wrong with this request (one draw, seeded)."""
        if not (self.fault_rate or self.reset_rate or self.slow_rate):
            return None
        with self._lock:
            draw = self._random.random()
        outcome: Chaos | None = None
        if draw < self.fault_rate:
            outcome = "fault"
        elif (draw := draw - self.fault_rate) < self.reset_rate:
            outcome = "reset_before" if draw < self.reset_rate / 2 else "reset_after"
        elif draw - self.reset_rate < self.slow_rate:
            outcome = "slow"
        if outcome:
            with self._lock:
                self.chaos_seen[outcome] += 1
        return outcome

    def admit(self, user: str) -> Refusal | None:
        """None when the request may run (it then counts as in flight until :meth:`done`)."""
        real = self.clock()
        with self._lock:
            self.arrivals.setdefault(user, deque(maxlen=100_000)).append(real)
            refusal = self._admit(user, real * self.time_scale)
            if refusal is not None:
                self.throttled[refusal.code] += 1
                self.throttled_by_user[user] += 1
                self.refusals.setdefault(user, deque(maxlen=100_000)).append(
                    (real, refusal.retry_after)
                )
            return refusal

    def requests_while_paused(self, user: str, grace: float = 0.05) -> list[float]:
        """Arrivals of ``user``'s requests inside a Retry-After pause it was given: from
        ``grace`` seconds after a 429 (requests already on the wire) until ``grace`` before the
        pause ends. Empty when every worker of that app user honoured Retry-After."""
        with self._lock:
            pauses = list(self.refusals.get(user, ()))
            arrivals = list(self.arrivals.get(user, ()))
        return [
            t for t in arrivals if any(at + grace < t < at + wait - grace for at, wait in pauses)
        ]

    def _admit(self, user: str, now: float) -> Refusal | None:
        """The facet this request breaches, if any (``now`` in Dataverse's scaled time)."""
        horizon = now - self.window_seconds
        # called under self._lock (see admit)
        if self._in_flight[user] >= self.max_concurrent:
            return self._refuse(
                "0x80072326",
                f"Number of concurrent requests exceeded the limit of {self.max_concurrent}.",
                1.0,
            )
        seen = self._requests.setdefault(user, deque())
        while seen and seen[0] <= horizon:
            seen.popleft()
        if len(seen) >= self.requests_per_window:
            return self._refuse(
                "0x80072322",
                f"Number of requests exceeded the limit of {self.requests_per_window} "
                f"over time window of {self.window_seconds:.0f} seconds.",
                seen[0] + self.window_seconds - now,
            )
        runs = self._executions.setdefault(user, deque())
        while runs and runs[0][0] <= horizon:
            runs.popleft()
        if sum(ms for _, ms in runs) >= self.execution_ms_per_window:
            return self._refuse(
                "0x80072321",
                "Combined execution time of incoming requests exceeded limit of "
                f"{self.execution_ms_per_window} milliseconds over time window of "
                f"{self.window_seconds:.0f} seconds.",
                runs[0][0] + self.window_seconds - now,
            )
        seen.append(now)
        self._in_flight[user] += 1
        return None

    def done(self, user: str, real_seconds: float) -> None:
        """An admitted request is over; ``real_seconds`` of modelled service time count against
        the execution budget (the sandbox's own CPU time does not: it is not Dataverse's)."""
        with self._lock:
            self._in_flight[user] -= 1
            self._executions.setdefault(user, deque()).append(
                (self.clock() * self.time_scale, real_seconds * self.time_scale * 1000)
            )

    def service_time(self, operations: int) -> float:
        """Real seconds a request with this many operations is made to take."""
        return self.latency_seconds + self.latency_per_operation_seconds * operations

    def _refuse(self, code: str, message: str, scaled_wait: float) -> Refusal:
        return Refusal(code, message, max(scaled_wait / self.time_scale, 0.01))


def operation_count(path: str, body: bytes) -> int:
    """Operations one request carries: the parts of a ``$batch``, the rows of a *Multiple."""
    if path.endswith("/$batch"):
        return max(body.count(b"application/http"), 1)
    if path.endswith(("/CreateMultiple", "/UpsertMultiple")):
        try:
            return max(len(json.loads(body).get("Targets", [])), 1)
        except (ValueError, AttributeError):
            return 1
    return 1


def _resolve(reference: str, created: dict[str, str] | None) -> str:
    """``$n`` → the ``set(id)`` of the row part ``n`` of the same change set wrote."""
    found = (created or {}).get(reference[1:])
    if found is None:
        raise Failure(
            400, "0x0", f"Content-ID Reference: '{reference}' does not exist in the batch context."
        )
    return found


_NAVIGATIONS = ("OptionSet", "GlobalOptionSet", "GlobalOptionSet@odata.bind")


def _expanded(params: dict[str, str]) -> set[str]:
    """The navigation names in ``$expand`` (``OptionSet($select=Options),Keys`` → both)."""
    names, depth, current = set(), 0, ""
    for char in params.get("$expand", ""):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            names.add(current.strip())
            current = ""
        elif depth == 0:
            current += char
    names.add(current.strip())
    return names - {""}


def _plain_attribute(attribute: dict[str, Any]) -> dict[str, Any]:
    """An attribute as ``$expand=Attributes`` shows it: no option-set navigation properties
    (Dataverse reaches those only by casting to the attribute's metadata type)."""
    return {k: v for k, v in attribute.items() if k not in _NAVIGATIONS}


def _entity_answer(definition: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    """An EntityDefinitions answer: ``$select``-ed properties; Attributes and Keys only when
    expanded, attributes without their option sets."""
    expanded = _expanded(params)
    select = [c for c in params.get("$select", "").split(",") if c]
    answer = {
        k: v
        for k, v in definition.items()
        if k not in ("Attributes", "Keys", "ManyToOneRelationships")
        and (not select or k in select or k == "LogicalName")
    }
    if "Attributes" in expanded:
        answer["Attributes"] = [_plain_attribute(a) for a in definition["Attributes"]]
    if "Keys" in expanded:
        answer["Keys"] = definition["Keys"]
    if "ManyToOneRelationships" in expanded:
        answer["ManyToOneRelationships"] = definition.get("ManyToOneRelationships", [])
    return answer


def _key_entry(columns: list[str], values: dict[str, Any]) -> tuple[str, str]:
    """An alternate key's index entry: its sorted columns and their values as text."""
    return ",".join(columns), json.dumps([str(values[c]) for c in columns])


def _literal(raw: str) -> Any:
    raw = raw.strip()
    if raw.startswith("'") and raw.endswith("'"):
        return raw[1:-1].replace("''", "'")
    if raw in ("null", "true", "false"):
        return {"null": None, "true": True, "false": False}[raw]
    try:
        return int(raw)
    except ValueError:
        return raw


@dataclass(frozen=True)
class Comparison:
    """``col lt value`` and its kin: holds for a row whose value (as text) compares so. Dates
    and times compare as the ISO text they are stored as; null never compares (as in OData),
    except that null ``ne`` a value holds and ``ne null`` holds for every value.
    ``startswith``: the OData string function ``startswith(col,'prefix')``."""

    op: str
    value: str

    def __contains__(self, text: object) -> bool:
        if self.op == "ne":
            return str(text) != self.value
        if text == "None":
            return False
        other = str(text)
        if self.op == "startswith":
            return other.startswith(self.value)
        if self.op == "lt":
            return other < self.value
        if self.op == "le":
            return other <= self.value
        if self.op == "gt":
            return other > self.value
        return other >= self.value


Clauses = list[tuple[str, set[str] | Comparison]]


def parse_filter(text: str) -> Clauses:
    """The ``$filter`` forms the bridge sends: In(...), ``col eq value``, ``col lt value`` (and
    ``le``/``gt``/``ge``/``ne``), ``startswith(col,'text')``, joined by ``and``; as (column,
    accepted values) pairs that must all hold."""
    clauses: Clauses = []
    for clause in (c.strip() for c in re.split(r"\s+and\s+", text)):
        if clause.startswith("(") and clause.endswith(")") and clause.count("(") == 1:
            clause = clause[1:-1].strip()  # a parenthesised condition: (c eq true) and ...
        if m := _IN.fullmatch(clause):
            values = {v.replace("''", "'") for v in _STRING.findall(m.group(2))}
            clauses.append((m.group(1), values))
        elif m := _EQ.match(clause):
            clauses.append((m.group(1), {str(_literal(m.group(2)))}))
        elif m := _COMPARE.match(clause):
            clauses.append((m.group(1), Comparison(m.group(2), str(_literal(m.group(3))))))
        elif m := _STARTSWITH.match(clause):
            clauses.append((m.group(1), Comparison("startswith", m.group(2).replace("''", "'"))))
        else:
            raise Failure(400, "0x80060888", f"The query filter is not supported: {clause}")
    return clauses


def parse_alternatives(text: str) -> list[Clauses]:
    """A ``$filter`` of parenthesised conjunctions joined by ``or`` (the bridge's date windows:
    ``(c ge a and c le b) or (...)``), as the alternatives a row may match; a filter without a
    top-level ``or`` is one alternative."""
    parts, depth, start = [], 0, 0
    for m in re.finditer(r"'(?:[^']|'')*'|[()]|\s+or\s+", text):  # quoted text is skipped
        mark = m.group()
        if mark.startswith("'"):
            continue
        if mark == "(":
            depth += 1
        elif mark == ")":
            depth -= 1
        elif depth == 0:
            parts.append(text[start : m.start()])
            start = m.end()
    parts.append(text[start:])
    alternatives = []
    for part in (p.strip() for p in parts):
        if part.startswith("(") and part.endswith(")"):
            part = part[1:-1].strip()
        alternatives.append(parse_filter(part))
    return alternatives


def matches(row: dict[str, Any], clauses: Clauses) -> bool:
    return all(str(row.get(column)) in values for column, values in clauses)


#: Tables that can be merged: their one-to-many relationships must cascade Merge.
_MERGEABLE = frozenset({"contact", "account", "lead", "incident"})


def _labels(value: Any) -> list[dict[str, Any]]:
    """Every Label (a dict with ``LocalizedLabels``) inside a metadata body."""
    if isinstance(value, list):
        return [found for item in value for found in _labels(item)]
    if not isinstance(value, dict):
        return []
    own = [value] if "LocalizedLabels" in value else []
    return own + [found for k, v in value.items() if k != "LocalizedLabels" for found in _labels(v)]


#: Navigation properties of the standard polymorphic lookups -> their lookup column (a
#: contact's parentcustomerid is bound as parentcustomerid_account or _contact).
_POLYMORPHIC = {
    "parentcustomerid_account": "parentcustomerid",
    "parentcustomerid_contact": "parentcustomerid",
    "regardingobjectid_account_task": "regardingobjectid",
    "regardingobjectid_contact_task": "regardingobjectid",
    "objectid_task": "objectid",
}

#: The single-valued navigation properties of the standard tables whose binds the sandbox checks
#: as Dataverse does, and the tables each may point to (Microsoft Learn, Dataverse table
#: reference: task ``Contact_Tasks``/``Account_Tasks`` → ``regardingobjectid_*_task``, OwnerId
#: targets systemuser and team; queueitem ObjectId → ``objectid_task``, QueueId → ``queueid``).
#: Any other navigation on these tables is refused as undeclared; a bind to another table is
#: refused as the wrong type.
STANDARD_NAVIGATIONS: dict[str, dict[str, frozenset[str]]] = {
    "task": {
        "regardingobjectid_contact_task": frozenset({"contact"}),
        "regardingobjectid_account_task": frozenset({"account"}),
        "ownerid": frozenset({"systemuser", "team"}),
    },
    "queueitem": {
        "objectid_task": frozenset({"task"}),
        "queueid": frozenset({"queue"}),
    },
}


class DataverseSandbox:
    def __init__(
        self,
        db_path: str = ":memory:",
        *,
        base_url: str = "https://127.0.0.1",
        limits: Limits | None = None,
        base_language: int = 1033,
    ) -> None:
        self.base_url = base_url
        #: The environment's base language: every label of a metadata create needs a text in it.
        self.base_language = base_language
        #: Solutions by unique name → their publisher (``customizationprefix``,
        #: ``customizationoptionvalueprefix``); metadata written into one must follow it.
        self.solutions: dict[str, dict[str, Any]] = {}
        self.add_solution("MemberBridge", publisher="memberbridge", prefix="mbr")
        self.limits = limits or Limits()
        self.credentials: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self._lock = threading.RLock()
        self._by_set: dict[str, dict[str, Any]] = {}
        #: (table, $filter, (max version, rows)) -> the rows it matched: see _matching
        self._matched: dict[tuple[Any, ...], list[tuple[str, dict[str, Any], int]]] = {}
        self.db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS rows (entity TEXT, id TEXT, data TEXT, version INTEGER,
                                             deleted INTEGER DEFAULT 0, PRIMARY KEY (entity, id));
            CREATE TABLE IF NOT EXISTS entities (logical TEXT PRIMARY KEY, entity_set TEXT UNIQUE,
                                                 definition TEXT);
            CREATE TABLE IF NOT EXISTS counter (version INTEGER);
            CREATE TABLE IF NOT EXISTS keys (entity TEXT, name TEXT, value TEXT, id TEXT,
                                             PRIMARY KEY (entity, name, value));
            CREATE INDEX IF NOT EXISTS keys_by_row ON keys (entity, id);
        """)
        if self.db.execute("SELECT count(*) FROM counter").fetchone()[0] == 0:
            self.db.execute("INSERT INTO counter VALUES (1000)")
        self.requests = 0
        #: Metadata written with ``MSCRM.SolutionUniqueName``: solution → what was added to it.
        self.solution_components: dict[str, list[str]] = {}

    # -- app users and metadata -----------------------------------------------------------------

    def add_solution(
        self, unique_name: str, *, publisher: str, prefix: str, option_value_prefix: int = 10000
    ) -> None:
        """A solution and its publisher (option values from ``option_value_prefix`` × 10,000)."""
        self.solutions[unique_name] = {
            "uniquename": publisher,
            "customizationprefix": prefix,
            "customizationoptionvalueprefix": option_value_prefix,
        }

    def add_app_user(self, client_id: str, secret: str) -> None:
        self.credentials[client_id] = secret

    def issue_token(self, client_id: str, secret: str) -> str | None:
        if self.credentials.get(client_id) != secret:
            return None
        token = uuid.uuid4().hex
        self.tokens[token] = client_id
        return token

    def define_entity(self, definition: dict[str, Any]) -> None:
        definition.setdefault("Attributes", [])
        definition.setdefault("Keys", [])
        with self._lock:
            self.db.execute(
                "INSERT OR REPLACE INTO entities VALUES (?, ?, ?)",
                (definition["LogicalName"], definition["EntitySetName"], json.dumps(definition)),
            )
            self._by_set.clear()

    def entity(self, logical: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT definition FROM entities WHERE logical = ?", (logical,)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def _entity_by_set(self, entity_set: str) -> dict[str, Any]:
        """A table's definition for reading (shared and cached: do not change it)."""
        if (cached := self._by_set.get(entity_set)) is not None:
            return cached
        row = self.db.execute(
            "SELECT definition FROM entities WHERE entity_set = ?", (entity_set,)
        ).fetchone()
        if row is None:
            raise Failure(404, "0x80060888", f"Resource not found for the segment '{entity_set}'.")
        self._by_set[entity_set] = json.loads(row[0])
        return self._by_set[entity_set]

    # -- rows -----------------------------------------------------------------------------------

    def _next_version(self) -> int:
        self.db.execute("UPDATE counter SET version = version + 1")
        return int(self.db.execute("SELECT version FROM counter").fetchone()[0])

    def _rows(self, logical: str) -> list[tuple[str, dict[str, Any], int]]:
        return [
            (r[0], json.loads(r[1]), r[2])
            for r in self.db.execute(
                "SELECT id, data, version FROM rows WHERE entity = ? AND deleted = 0 "
                "ORDER BY rowid",
                (logical,),
            )
        ]

    def _find(self, entity: dict[str, Any], key: str) -> tuple[str, dict[str, Any], int] | None:
        """The row a key addresses: by primary id, or through a declared alternate key's index."""
        pairs = dict((n, _literal(v)) for n, v in _PAIR.findall(key))
        primary = entity["PrimaryIdAttribute"]
        if not pairs:  # a bare GUID
            pairs = {primary: key.strip("'")}
        if set(pairs) == {primary}:
            row_id = str(pairs[primary])
        else:
            if set(pairs) not in [set(k["KeyAttributes"]) for k in entity["Keys"]]:
                raise Failure(
                    400,
                    "0x80060890",
                    f"The key in the request URI is not valid for resource "
                    f"'{entity['LogicalName']}'. Make sure the key is declared.",
                )
            name, value = _key_entry(sorted(pairs), pairs)
            hit = self.db.execute(
                "SELECT id FROM keys WHERE entity = ? AND name = ? AND value = ?",
                (entity["LogicalName"], name, value),
            ).fetchone()
            if hit is None:
                return None
            row_id = hit[0]
        row = self.db.execute(
            "SELECT data, version FROM rows WHERE entity = ? AND id = ? AND deleted = 0",
            (entity["LogicalName"], row_id),
        ).fetchone()
        return (row_id, json.loads(row[0]), row[1]) if row else None

    def _candidates(
        self, entity: dict[str, Any], clauses: Clauses
    ) -> list[tuple[str, dict[str, Any], int]]:
        """Rows that may match: through the primary id or a one-column key when a clause is on
        one (as Dataverse's indexes would), else every row."""
        logical = entity["LogicalName"]
        single = {k["KeyAttributes"][0] for k in entity["Keys"] if len(k["KeyAttributes"]) == 1}
        for column, values in clauses:
            if isinstance(values, Comparison):
                continue
            if column == entity["PrimaryIdAttribute"]:
                ids = sorted(values)
            elif column in single:
                entries = [_key_entry([column], {column: v})[1] for v in values]
                ids = [
                    r[0]
                    for r in self._select_in(
                        "SELECT id FROM keys WHERE entity = ? AND name = ? AND value",
                        (logical, column),
                        entries,
                    )
                ]
            elif _LOOKUP_VALUE.fullmatch(column):
                # Dataverse indexes lookup columns: a member's payment rows are found by it.
                path = f"json_extract(data, '$.\"{column}\"')"
                self.db.execute(f"CREATE INDEX IF NOT EXISTS by{column} ON rows (entity, {path})")
                found = self._select_in(
                    "SELECT id, data, version, rowid FROM rows "  # noqa: S608 - column checked
                    f"WHERE entity = ? AND deleted = 0 AND {path}",
                    (logical,),
                    sorted(values),
                )
                return [(r[0], json.loads(r[1]), r[2]) for r in sorted(found, key=lambda r: r[3])]
            else:
                continue
            found = self._select_in(
                "SELECT id, data, version, rowid FROM rows WHERE entity = ? AND deleted = 0 AND id",
                (logical,),
                ids,
            )
            return [(r[0], json.loads(r[1]), r[2]) for r in sorted(found, key=lambda r: r[3])]
        return self._rows(logical)

    def _select_in(self, sql: str, fixed: tuple[str, ...], values: list[str]) -> list[Any]:
        """``sql IN (values)`` in chunks SQLite accepts; only placeholders are formatted in."""
        rows: list[Any] = []
        for start in range(0, len(values), 500):
            part = values[start : start + 500]
            marks = ",".join("?" * len(part))
            rows += self.db.execute(f"{sql} IN ({marks})", (*fixed, *part)).fetchall()
        return rows

    def _index(self, entity: dict[str, Any], row_id: str, data: dict[str, Any]) -> None:
        """Keep the alternate-key index of one row; a value another row holds is refused."""
        logical = entity["LogicalName"]
        self.db.execute("DELETE FROM keys WHERE entity = ? AND id = ?", (logical, row_id))
        for declared in entity["Keys"]:
            columns = sorted(declared["KeyAttributes"])
            if any(data.get(c) is None for c in columns):
                continue
            name, value = _key_entry(columns, data)
            holder = self.db.execute(
                "SELECT id FROM keys WHERE entity = ? AND name = ? AND value = ?",
                (logical, name, value),
            ).fetchone()
            if holder is not None:
                raise Failure(
                    412,
                    "0x80060892",
                    f"A record that has the attribute values {value} already exists. "
                    f"The entity key {declared.get('LogicalName', name)} requires that this set "
                    "of attributes contains unique values.",
                )
            self.db.execute("INSERT INTO keys VALUES (?, ?, ?, ?)", (logical, name, value, row_id))

    def _binds(self, body: dict[str, Any], entity: dict[str, Any] | None = None) -> dict[str, Any]:
        """``nav@odata.bind: /contacts(key='v')`` → the lookup column ``_nav_value``. On the
        standard tables of :data:`STANDARD_NAVIGATIONS` the navigation must be declared and
        point to a table it may (Dataverse: 400 "undeclared property"). A row that is not there
        is a 404: ObjectDoesNotExist ("team With Id = ... Does Not Exist") when bound by id,
        RecordNotFoundByEntityKey when bound by an alternate key (reference dataverse.md §3, §5)."""
        out = {}
        declared = STANDARD_NAVIGATIONS.get(str((entity or {}).get("LogicalName")))
        for name, value in body.items():
            if name.endswith("@odata.bind"):
                m = _KEY.match(str(value).lstrip("/"))
                if not m:
                    raise Failure(400, "0x80048d19", f"Invalid bind value {value!r}")
                raw_navigation = name.split("@")[0]
                if declared is not None and raw_navigation not in declared:
                    raise Failure(
                        400,
                        "0x80060888",
                        f"An undeclared property '{raw_navigation}' which only has property "
                        "annotations in the payload but no property value was found in the "
                        "payload. In OData, only declared navigation properties and declared "
                        "named streams can be represented as properties without values.",
                    )
                target = self._entity_by_set(m.group("set"))
                if declared is not None and target["LogicalName"] not in declared[raw_navigation]:
                    raise Failure(
                        400,
                        "0x80048d19",
                        f"Error identified in Payload provided by the user for Entity :"
                        f"'{(entity or {}).get('EntitySetName')}': the navigation property "
                        f"{raw_navigation} points to "
                        f"{' or '.join(sorted(declared[raw_navigation]))}, not "
                        f"{target['LogicalName']}.",
                    )
                found = self._find(target, m.group("key"))
                if found is None:
                    if not _PAIR.findall(m.group("key")):  # bound by the row's id
                        raise Failure(
                            404,
                            "0x80040217",
                            f"{target['LogicalName']} With Id = {m.group('key').strip(chr(39))} "
                            "Does Not Exist",
                        )
                    raise Failure(
                        404,
                        "0x80060891",
                        "A record with the specified key values "
                        f"does not exist in {target['LogicalName']} entity",
                    )
                navigation = raw_navigation.lower()
                out[f"_{_POLYMORPHIC.get(navigation, navigation)}_value"] = found[0]
            else:
                out[name] = value
        return out

    def _write(
        self, entity: dict[str, Any], key: str | None, body: dict[str, Any], headers: dict[str, str]
    ) -> Answer:
        if_match = headers.get("If-Match")
        if_none = headers.get("If-None-Match")
        found = self._find(entity, key) if key is not None else None
        logical = entity["LogicalName"]
        if found is not None and if_none == "*":
            raise Failure(412, "0x80040237", "A record with matching key values already exists.")
        if found is None and if_match is not None:
            raise Failure(
                404,
                "0x80060891",
                f"A record with the specified key values does not exist in {logical} entity",
            )
        if found is not None and if_match not in (None, "*") and if_match != f'W/"{found[2]}"':
            raise Failure(
                412,
                "0x80060882",
                "The version of the existing record doesn't match "
                "the RowVersion property provided.",
            )
        values = self._binds(body, entity)
        version = self._next_version()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if any(a["LogicalName"] == "modifiedon" for a in entity["Attributes"]):
            values["modifiedon"] = now  # Dataverse stamps every write
        if found is None:
            primary = entity["PrimaryIdAttribute"]
            addressed = {n: _literal(v) for n, v in _PAIR.findall(key or "")}
            if key is not None and not addressed:  # a bare GUID
                addressed = {primary: key.strip("'")}
            row_id = str(addressed.get(primary) or values.get(primary) or uuid.uuid4())
            data = {**addressed, **values, primary: row_id}  # on create the body wins (§2)
            if any(a["LogicalName"] == "createdon" for a in entity["Attributes"]):
                data.setdefault("createdon", now)
            self._index(entity, row_id, data)
            self.db.execute(
                "INSERT INTO rows VALUES (?, ?, ?, ?, 0)",
                (logical, row_id, json.dumps(data), version),
            )
        else:
            row_id, data, _ = found
            addressed = dict(_PAIR.findall(key or ""))
            data.update({k: v for k, v in values.items() if k not in addressed})
            self._index(entity, row_id, data)
            self.db.execute(
                "UPDATE rows SET data = ?, version = ? WHERE entity = ? AND id = ?",
                (json.dumps(data), version, logical, row_id),
            )
        return Answer(
            204, {"OData-EntityId": f"{self.base_url}{API}{entity['EntitySetName']}({row_id})"}
        )

    # -- requests -------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        """One HTTP request (already authenticated) → its answer."""
        headers = Headers(headers.items())  # HTTP header names have no case
        path, _, query = target.partition("?")
        path = unquote(path)
        if path.startswith(API):
            path = path[len(API) :]
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        try:
            with self._lock:
                if path == "$batch" and method == "POST":
                    return self._batch(headers, body)
                return self._dispatch(method, path, params, headers, body)
        except Failure as failure:
            return failure.answer

    def _dispatch(
        self, method: str, path: str, params: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Answer:
        payload = json.loads(body) if body else None
        if method == "GET" and path in ("organizations", "solutions"):
            return self._organization(path, params)
        if path.startswith(("EntityDefinitions", "RelationshipDefinitions", "InsertOptionValue")):
            if method == "POST":
                self._check_metadata_create(path, payload or {}, headers)
            if path.startswith("EntityDefinitions"):
                answer = self._metadata(method, path, params, payload)
            elif path == "RelationshipDefinitions" and method == "POST":
                answer = self._relationship(payload or {})
            elif path == "InsertOptionValue" and method == "POST":
                answer = self._insert_option(payload or {})
            else:
                raise Failure(405, "0x8006088a", f"{method} is not supported on {path}")
            solution = headers.get("MSCRM.SolutionUniqueName") or (
                payload.get("SolutionUniqueName") if isinstance(payload, dict) else None
            )
            if method == "POST" and solution:
                self.solution_components.setdefault(str(solution), []).append(
                    str((payload or {}).get("SchemaName") or path)
                )
            return answer
        if (bulk := _MULTIPLE.match(path)) and method == "POST":
            return self._multiple(
                self._entity_by_set(bulk.group("set")), bulk.group("action"), payload or {}
            )
        m = _KEY.match(path)
        entity_set, key = (m.group("set"), m.group("key")) if m else (path, None)
        entity = self._entity_by_set(entity_set)
        if method == "GET" and key is None:
            return self._query(entity, params, headers)
        if method == "GET" and key is not None:
            found = self._find(entity, key)
            if found is None:
                raise Failure(
                    404,
                    "0x80060891",
                    "A record with the specified key values does "
                    f"not exist in {entity['LogicalName']} entity",
                )
            return Answer(200, {}, {"@odata.etag": f'W/"{found[2]}"', **found[1]})
        if method == "PATCH" and key is not None:
            self.db.execute("SAVEPOINT w")
            try:
                answer = self._write(entity, key, payload or {}, headers)
            except Failure:
                self.db.execute("ROLLBACK TO w")
                raise
            finally:
                self.db.execute("RELEASE w")
            return answer
        if method == "POST" and key is None:
            return self._write(entity, None, payload or {}, headers)
        if method == "DELETE" and key is not None:
            found = self._find(entity, key)
            if found is None:
                raise Failure(
                    404, "0x80060891", "A record with the specified key values does not exist"
                )
            self.db.execute(
                "UPDATE rows SET deleted = 1, version = ? WHERE entity = ? AND id = ?",
                (self._next_version(), entity["LogicalName"], found[0]),
            )
            self.db.execute(
                "DELETE FROM keys WHERE entity = ? AND id = ?", (entity["LogicalName"], found[0])
            )
            return Answer(204)
        raise Failure(405, "0x8006088a", f"{method} is not supported on {path}")

    def _multiple(self, entity: dict[str, Any], action: str, payload: dict[str, Any]) -> Answer:
        """CreateMultiple / UpsertMultiple: every target or none (a standard table's rule)."""
        logical = entity["LogicalName"]
        ids: list[str] = []
        self.db.execute("SAVEPOINT bulk")
        try:
            for target in payload.get("Targets", []):
                body = dict(target)
                if body.pop("@odata.type", None) != f"Microsoft.Dynamics.CRM.{logical}":
                    raise Failure(400, "0x80048d19", f"Each target must be a {logical}.")
                key = None
                if action == "Upsert" and (address := body.pop("@odata.id", None)):
                    m = _KEY.match(str(address).lstrip("/"))
                    if m is None:
                        raise Failure(400, "0x80048d19", f"Invalid @odata.id {address!r}")
                    key = m.group("key")
                    if set(dict(_PAIR.findall(key))) & set(body):
                        raise Failure(
                            400, "0x80040216", "Key attributes must not be in the target's body."
                        )
                answer = self._write(entity, key, body, {})
                ids.append(answer.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")"))
        except Failure:
            self.db.execute("ROLLBACK TO bulk")
            raise
        finally:
            self.db.execute("RELEASE bulk")
        context = f"{self.base_url}{API}$metadata#Microsoft.Dynamics.CRM.{action}MultipleResponse"
        return Answer(200, {}, {"@odata.context": context, "Ids": ids})

    def _query(
        self, entity: dict[str, Any], params: dict[str, str], headers: dict[str, str]
    ) -> Answer:
        prefer = headers.get("Prefer", "")
        tracking = "odata.track-changes" in prefer
        if "$deltatoken" in params:
            return self._delta(entity, params)
        m = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        page = min(int(m.group(1)) if m else 5000, 5000)
        skip = int(params.get("$skiptoken", "0") or 0)
        if "$filter" in params and tracking:
            raise Failure(400, "0x80060888", "$filter is not supported with change tracking")
        rows = self._matching(entity, params.get("$filter"))
        select = [c for c in params.get("$select", "").split(",") if c]
        selected = rows[skip : skip + page]
        value = [self._shape(entity, data, version, select) for _, data, version in selected]
        answer: dict[str, Any] = {
            "@odata.context": f"{self.base_url}{API}$metadata#{entity['EntitySetName']}",
            "value": value,
        }
        base = f"{self.base_url}{API}{entity['EntitySetName']}"
        if skip + page < len(rows):
            rest = {k: v for k, v in params.items() if k != "$skiptoken"}
            answer["@odata.nextLink"] = f"{base}?{urlencode({**rest, '$skiptoken': skip + page})}"
        elif tracking:
            version = int(self.db.execute("SELECT version FROM counter").fetchone()[0])
            token = urlencode({"$select": params.get("$select", ""), "$deltatoken": version})
            answer["@odata.deltaLink"] = f"{base}?{token}"
        headers_out = {"Preference-Applied": "odata.track-changes"} if tracking else {}
        return Answer(200, headers_out, answer)

    def _matching(
        self, entity: dict[str, Any], where: str | None
    ) -> list[tuple[str, dict[str, Any], int]]:
        """The rows a query matches, kept while the table is unchanged, so the pages of one
        query (``$skiptoken``) read the table once, not once per page."""
        logical = entity["LogicalName"]
        state = self.db.execute(
            "SELECT max(version), count(*) FROM rows WHERE entity = ?", (logical,)
        ).fetchone()
        key = (logical, where, tuple(state))
        cached = self._matched.get(key)
        if cached is not None:
            return cached
        if where is None:
            rows = self._rows(logical)
        else:
            found: dict[str, tuple[str, dict[str, Any], int]] = {}
            for clauses in parse_alternatives(where):
                for row in self._candidates(entity, clauses):
                    if matches(row[1], clauses):
                        found.setdefault(row[0], row)
            rows = list(found.values())
        if len(self._matched) >= 8:
            self._matched.pop(next(iter(self._matched)))
        self._matched[key] = rows
        return rows

    def _delta(self, entity: dict[str, Any], params: dict[str, str]) -> Answer:
        since = int(params["$deltatoken"])
        select = [c for c in params.get("$select", "").split(",") if c]
        value = []
        for row_id, data, version, deleted in self.db.execute(
            "SELECT id, data, version, deleted FROM rows WHERE entity = ? AND version > ? "
            "ORDER BY version",
            (entity["LogicalName"], since),
        ):
            if deleted:
                value.append(
                    {
                        "@odata.context": f"{self.base_url}{API}$metadata#"
                        f"{entity['EntitySetName']}/$deletedEntity",
                        "id": row_id,
                        "reason": "deleted",
                    }
                )
            else:
                value.append(self._shape(entity, json.loads(data), version, select))
        version = int(self.db.execute("SELECT version FROM counter").fetchone()[0])
        base = f"{self.base_url}{API}{entity['EntitySetName']}"
        return Answer(
            200,
            {},
            {
                "value": value,
                "@odata.deltaLink": f"{base}?"
                + urlencode({"$select": params.get("$select", ""), "$deltatoken": version}),
            },
        )

    @staticmethod
    def _shape(
        entity: dict[str, Any], data: dict[str, Any], version: int, select: list[str]
    ) -> dict[str, Any]:
        primary = entity["PrimaryIdAttribute"]
        columns = select or list(data)
        shaped = {c: data.get(c) for c in columns}
        shaped[primary] = data.get(primary)
        return {"@odata.etag": f'W/"{version}"', **shaped}

    def _batch(self, headers: dict[str, str], body: bytes) -> Answer:
        items = parse_batch_request(headers.get("Content-Type", ""), body)
        if len(operations(items)) > 1000:
            raise Failure(400, "0x8004800d", "The number of requests in a batch exceeds 1000.")
        continue_on_error = "odata.continue-on-error" in headers.get("Prefer", "")
        ids = [r.content_id for r in operations(items) if r.content_id is not None]
        if len(ids) != len(set(ids)):
            raise Failure(400, "0x0", "Content-ID values must be unique within the batch.")
        groups: list[list[BatchPart] | BatchPart] = []
        for item in items:
            requests_ = item.requests if isinstance(item, ChangeSet) else [item]
            self.db.execute("SAVEPOINT cs")
            parts: list[BatchPart] = []
            failed = False
            created: dict[str, str] = {}  # Content-ID → "set(id)": what $n means in this set
            for req in requests_:
                answer = self._one(req, created)
                parts.append(BatchPart(answer.status, answer.headers, answer.body, req.content_id))
                if answer.status >= 400:
                    failed = True
                    break
                entity_id = answer.headers.get("OData-EntityId", "")
                if isinstance(item, ChangeSet) and req.content_id is not None and entity_id:
                    created[req.content_id] = entity_id.rsplit("/", 1)[-1]
            if failed and isinstance(item, ChangeSet):
                self.db.execute("ROLLBACK TO cs")
                parts = [parts[-1]]  # a failed change set answers with its failing part
            self.db.execute("RELEASE cs")
            groups.append(parts if isinstance(item, ChangeSet) else parts[0])
            if failed and not continue_on_error:
                break
        content_type, payload = render_batch_response(groups)
        return Answer(200, {"Content-Type": content_type}, payload)

    def _one(self, req: BatchRequest, created: dict[str, str] | None = None) -> Answer:
        """One part of a ``$batch``; ``created`` resolves the change set's ``$n`` references
        (a URL ``$1`` or ``$1/...``, a ``"nav@odata.bind": "$1"``) to the rows parts made."""
        try:
            path, _, query = req.url.partition("?")
            if path.startswith("http"):
                path = "/" + path.split("/", 3)[3]
            path = unquote(path)
            if path.startswith(API):
                path = path[len(API) :]
            if path.startswith("$"):
                ref, slash, rest = path.partition("/")
                path = _resolve(ref, created) + slash + rest
            params = {k: v[0] for k, v in parse_qs(query).items()}
            headers = Headers(req.headers.items())
            payload = req.body
            if isinstance(payload, dict):
                payload = {
                    k: "/" + _resolve(v, created)
                    if k.endswith("@odata.bind") and isinstance(v, str) and v.startswith("$")
                    else v
                    for k, v in payload.items()
                }
            body = json.dumps(payload).encode() if payload is not None else b""
            return self._dispatch(req.method, path, params, headers, body)
        except Failure as failure:
            return failure.answer

    # -- metadata -------------------------------------------------------------------------------

    def _organization(self, path: str, params: dict[str, str]) -> Answer:
        """``organizations`` (one row: the base ``languagecode``) and ``solutions`` filtered by
        ``uniquename eq '...'`` with the publisher expanded (``publisherid``)."""
        if path == "organizations":
            row = {"organizationid": "00000000-0000-0000-0000-00000000000a"}
            return Answer(200, {}, {"value": [{**row, "languagecode": self.base_language}]})
        wanted = dict(parse_filter(params["$filter"])) if params.get("$filter") else {}
        names = wanted.get("uniquename")
        value = [
            {"uniquename": name, "publisherid": dict(publisher)}
            for name, publisher in self.solutions.items()
            if names is None or name in names
        ]
        return Answer(200, {}, {"value": value})

    def _check_metadata_create(
        self, path: str, payload: dict[str, Any], headers: dict[str, str]
    ) -> None:
        """Refuse what Dataverse refuses in a metadata create (the rules, with their sources, are
        in :mod:`dynamics_bridge.dataverse.metadata`): a label without the base language, a
        yes/no column without its two options, a date-only format with a user-local behaviour
        (Dataverse accepts that one and then shifts dates; the sandbox refuses it so a test
        catches it), a relationship to a mergeable table whose
        Merge does not cascade, and, inside a solution, names without the publisher's prefix
        and choice values outside its option value range."""
        for found in _labels(payload):
            codes = {int(x.get("LanguageCode") or 0) for x in found.get("LocalizedLabels") or []}
            if self.base_language not in codes:
                texts = [x.get("Label") for x in found.get("LocalizedLabels") or []]
                raise Failure(
                    400,
                    "0x80040203",
                    f"The label for base language code {self.base_language} is not set "
                    f"(label {texts!r} has {sorted(codes)}).",
                )
        attributes = [payload, *(payload.get("Attributes") or [])]
        if isinstance(payload.get("Lookup"), dict):
            attributes.append(payload["Lookup"])
        for attribute in attributes:
            kind = str(attribute.get("@odata.type", "")).rsplit(".", 1)[-1]
            if kind == "BooleanAttributeMetadata":
                option_set = attribute.get("OptionSet") or {}
                if not (option_set.get("TrueOption") and option_set.get("FalseOption")):
                    raise Failure(
                        400,
                        "0x80040203",
                        f"Attribute {attribute.get('SchemaName')}: a Boolean attribute needs an "
                        "OptionSet (BooleanOptionSetMetadata) with TrueOption and FalseOption.",
                    )
            if kind == "DateTimeAttributeMetadata" and attribute.get("Format") == "DateOnly":
                behaviour = (attribute.get("DateTimeBehavior") or {}).get("Value") or "UserLocal"
                if behaviour != "DateOnly":
                    raise Failure(
                        400,
                        "0x80040203",
                        f"Attribute {attribute.get('SchemaName')}: Format DateOnly with "
                        f"DateTimeBehavior {behaviour} stores local midnight as UTC (dates read "
                        "back a day early east of UTC); send DateTimeBehavior DateOnly.",
                    )
        if path == "RelationshipDefinitions":
            referenced = str(payload.get("ReferencedEntity") or "")
            merge = (payload.get("CascadeConfiguration") or {}).get("Merge")
            if referenced in _MERGEABLE and merge != "Cascade":
                raise Failure(
                    400,
                    "0x80040203",
                    f"Merge cascade type {merge} is not valid for relationship "
                    f"{payload.get('SchemaName')}: for a referenced entity that can be merged "
                    f"({referenced}) Cascade is the only valid option.",
                )
        solution = headers.get("MSCRM.SolutionUniqueName") or payload.get("SolutionUniqueName")
        publisher = self.solutions.get(str(solution)) if solution else None
        if publisher is None:
            return
        prefix = str(publisher["customizationprefix"]).lower() + "_"
        names = [a.get("SchemaName") for a in attributes] + (
            [payload.get("SchemaName")] if path == "RelationshipDefinitions" else []
        )
        for name in names:
            if path != "InsertOptionValue" and name and not str(name).lower().startswith(prefix):
                raise Failure(
                    400,
                    "0x80040203",
                    f"The schema name {name} does not start with the customization prefix "
                    f"{prefix} of solution {solution}'s publisher.",
                )
        start = int(publisher["customizationoptionvalueprefix"]) * 10_000
        values = [payload.get("Value")] if path == "InsertOptionValue" else []
        for attribute in attributes:
            options = (attribute.get("OptionSet") or {}).get("Options") or []
            values += [o.get("Value") for o in options]
        for value in values:
            if value is not None and not start <= int(value) < start + 10_000:
                raise Failure(
                    400,
                    "0x80040203",
                    f"The option value {value} is outside the range {start}-{start + 9999} of "
                    f"solution {solution}'s publisher (option value prefix {start // 10_000}).",
                )

    def _metadata(self, method: str, path: str, params: dict[str, str], payload: Any) -> Answer:
        m = re.match(
            r"EntityDefinitions(?:\(LogicalName='(\w+)'\))?"
            r"(?:/(Attributes|Keys)(?:/Microsoft\.Dynamics\.CRM\.(\w+)AttributeMetadata)?)?$",
            path,
        )
        if not m:
            raise Failure(400, "0x80060888", f"Unsupported metadata path {path}")
        logical, part, cast = m.group(1), m.group(2), m.group(3)
        if method == "GET" and not logical and not part:
            return self._entity_list(params)
        if method == "GET" and logical:
            definition = self.entity(logical)
            if definition is None:
                raise Failure(404, "0x80060888", f"Could not find entity '{logical}'")
            if part == "Attributes":
                return self._attributes(definition, cast, params)
            if part == "Keys":
                return Answer(200, {}, {"value": definition["Keys"]})
            return Answer(200, {}, _entity_answer(definition, params))
        if method == "POST" and not logical:
            schema = payload["SchemaName"].lower()
            entity_set = payload.get("EntitySetName") or schema + "s"
            taken = self.db.execute(
                "SELECT logical FROM entities WHERE logical = ? OR entity_set = ?",
                (schema, entity_set),
            ).fetchone()
            if taken is not None:
                # Dataverse refuses a table whose name is taken (SchemaNameisNotUnique); it never
                # replaces the existing one, so a create sent twice fails the second time.
                raise Failure(
                    400,
                    "0x80044363",
                    f"The schema name {payload['SchemaName']} for type Entity is not unique. "
                    f"An Entity with same name already exists ({taken[0]}).",
                )
            self.define_entity(
                {
                    "LogicalName": schema,
                    "SchemaName": payload["SchemaName"],
                    "EntitySetName": entity_set,
                    "PrimaryIdAttribute": schema + "id",
                    "ChangeTrackingEnabled": bool(payload.get("ChangeTrackingEnabled", True)),
                    "Attributes": [
                        {"LogicalName": schema + "id", "AttributeType": "Uniqueidentifier"},
                        # Dataverse gives every table its system columns; createdon is the one
                        # the bridge reads (the trigger outbox's age).
                        {"LogicalName": "createdon", "AttributeType": "DateTime"},
                        *payload.get("Attributes", []),
                    ],
                    "Keys": [],
                }
            )
            return Answer(204)
        if method == "POST" and logical and part:
            definition = self.entity(logical)
            if definition is None:
                raise Failure(404, "0x80060888", f"Could not find entity '{logical}'")
            item = dict(payload)
            if part == "Attributes" and not cast:
                item.setdefault("LogicalName", str(item.get("SchemaName", "")).lower())
                kind = str(item.get("@odata.type", "")).rsplit(".", 1)[-1]
                if kind == "LookupAttributeMetadata" or item.get("AttributeType") == "Lookup":
                    raise Failure(
                        400,
                        "0x80040203",
                        "A lookup attribute cannot be created through the Attributes collection: "
                        "create a OneToManyRelationshipMetadata through RelationshipDefinitions.",
                    )
                item.setdefault("AttributeType", kind.removesuffix("AttributeMetadata") or None)
                if any(a["LogicalName"] == item["LogicalName"] for a in definition["Attributes"]):
                    raise Failure(
                        400,
                        "0x80044363",
                        f"An attribute named {item['LogicalName']} already exists",
                    )
                definition["Attributes"].append(item)
            elif part == "Keys":
                item.setdefault("LogicalName", str(item.get("SchemaName", "")).lower())
                self._check_new_key(definition, item)
                item.setdefault("EntityKeyIndexStatus", "Active")
                definition["Keys"].append(item)
                for row_id, data, _ in self._rows(logical):  # existing rows join the new index
                    self._index(definition, row_id, data)
            else:
                raise Failure(405, "0x8006088a", f"{method} is not supported on {path}")
            self.define_entity(definition)
            return Answer(204)
        raise Failure(405, "0x8006088a", f"{method} is not supported on {path}")

    @staticmethod
    def _check_new_key(definition: dict[str, Any], key: dict[str, Any]) -> None:
        """Dataverse refuses a second alternate key on the same columns
        (EntityKeyWithSelectedAttributesExists) and a second key of the same name
        (EntityKeyNameExists), so a key planned again, or a create sent twice, fails here too."""
        columns = set(key.get("KeyAttributes") or ())
        for existing in definition["Keys"]:
            if str(existing.get("LogicalName")).lower() == key["LogicalName"]:
                raise Failure(
                    400,
                    "0x80060893",
                    f"An entity key with the name {key['LogicalName']} already exists on entity "
                    f"{definition['LogicalName']}.",
                )
            if set(existing.get("KeyAttributes") or ()) == columns:
                raise Failure(
                    400,
                    "0x80060894",
                    "An entity key with the selected attributes already exists on entity "
                    f"{definition['LogicalName']} ({existing.get('SchemaName')}).",
                )

    def _entity_list(self, params: dict[str, str]) -> Answer:
        """``GET EntityDefinitions``: every table, without attributes or keys unless expanded;
        ``$filter`` as for rows (e.g. ``ChangeTrackingEnabled eq true``)."""
        clauses = parse_filter(params["$filter"]) if params.get("$filter") else []
        definitions = [
            json.loads(row[0])
            for row in self.db.execute("SELECT definition FROM entities ORDER BY logical")
        ]
        value = [_entity_answer(d, params) for d in definitions if matches(d, clauses)]
        return Answer(
            200,
            {},
            {"@odata.context": f"{self.base_url}{API}$metadata#EntityDefinitions", "value": value},
        )

    def _attributes(
        self, definition: dict[str, Any], cast: str | None, params: dict[str, str]
    ) -> Answer:
        """``.../Attributes``, or ``.../Attributes/Microsoft.Dynamics.CRM.<T>AttributeMetadata``:
        only the cast reaches a choice column's ``OptionSet`` / ``GlobalOptionSet``."""
        expanded = _expanded(params)
        select = [c for c in params.get("$select", "").split(",") if c]
        value = []
        for attribute in definition["Attributes"]:
            if cast and attribute.get("AttributeType") != cast:
                continue
            shaped = _plain_attribute(attribute)
            if select:
                shaped = {k: v for k, v in shaped.items() if k in select or k == "LogicalName"}
            if cast:
                for navigation in ("OptionSet", "GlobalOptionSet"):
                    if navigation in expanded:
                        shaped[navigation] = attribute.get(navigation)
            value.append(shaped)
        return Answer(200, {}, {"value": value})

    def _relationship(self, payload: dict[str, Any]) -> Answer:
        """``POST RelationshipDefinitions`` with a one-to-many relationship: the lookup column
        (``Lookup``) appears on the referencing table, its navigation property named as the
        lookup's schema name (``mbr_Member@odata.bind``)."""
        if payload.get("@odata.type") != "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata":
            raise Failure(
                400, "0x80040203", "Only OneToManyRelationshipMetadata is supported here."
            )
        referenced = self.entity(str(payload.get("ReferencedEntity", "")))
        referencing = self.entity(str(payload.get("ReferencingEntity", "")))
        if referenced is None or referencing is None:
            raise Failure(
                404,
                "0x80040217",
                f"Could not find entity '{payload.get('ReferencedEntity')}' or "
                f"'{payload.get('ReferencingEntity')}'",
            )
        lookup = dict(payload.get("Lookup") or {})
        if not lookup.get("SchemaName") or not payload.get("SchemaName"):
            raise Failure(400, "0x80040203", "SchemaName and Lookup.SchemaName are required.")
        logical = str(lookup["SchemaName"]).lower()
        if any(a["LogicalName"] == logical for a in referencing["Attributes"]):
            raise Failure(400, "0x80044363", f"An attribute named {logical} already exists")
        lookup.update(
            {
                "LogicalName": logical,
                "AttributeType": "Lookup",
                "Targets": [referenced["LogicalName"]],
            }
        )
        referencing["Attributes"].append(lookup)
        relationship_id = str(uuid.uuid4())
        referencing.setdefault("ManyToOneRelationships", []).append(
            {
                "MetadataId": relationship_id,
                "SchemaName": payload["SchemaName"],
                "ReferencedEntity": referenced["LogicalName"],
                "ReferencedAttribute": payload.get("ReferencedAttribute")
                or referenced["PrimaryIdAttribute"],
                "ReferencingEntity": referencing["LogicalName"],
                "ReferencingAttribute": logical,
                "ReferencingEntityNavigationPropertyName": lookup["SchemaName"],
            }
        )
        self.define_entity(referencing)
        return Answer(
            204,
            {"OData-EntityId": f"{self.base_url}{API}RelationshipDefinitions({relationship_id})"},
        )

    def _insert_option(self, payload: dict[str, Any]) -> Answer:
        """The ``InsertOptionValue`` action on a local choice column → ``NewOptionValue``."""
        definition = self.entity(str(payload.get("EntityLogicalName", "")))
        column = str(payload.get("AttributeLogicalName", ""))
        attribute = next(
            (a for a in (definition or {}).get("Attributes", []) if a["LogicalName"] == column),
            None,
        )
        if definition is None or attribute is None:
            raise Failure(
                404,
                "0x80040217",
                f"Could not find attribute '{column}' on '{payload.get('EntityLogicalName')}'",
            )
        if attribute.get("AttributeType") != "Picklist" or payload.get("OptionSetName"):
            raise Failure(400, "0x80040203", f"{column} is not a local choice column.")
        option_set = attribute.setdefault(
            "OptionSet", {"IsGlobal": False, "OptionSetType": "Picklist", "Options": []}
        )
        options = option_set.setdefault("Options", [])
        taken = {int(o["Value"]) for o in options}
        value = payload.get("Value")
        if value is None:
            value = max(taken | {100_000_000 - 1}) + 1  # the default publisher's prefix
        if int(value) in taken:
            raise Failure(
                400, "0x80047010", f"An option with the value {value} already exists on {column}."
            )
        options.append({"Value": int(value), "Label": payload.get("Label")})
        self.define_entity(definition)
        context = f"{self.base_url}{API}$metadata#Microsoft.Dynamics.CRM.InsertOptionValueResponse"
        return Answer(200, {}, {"@odata.context": context, "NewOptionValue": int(value)})
