"""The console's routes: thin views over :mod:`dynamics_bridge.app.status`,
:mod:`dynamics_bridge.app.console.pages` and the poison book, each page with its JSON beside it.

The Retention page shows the latest retention report (HTML the retention job stored) through
one seam: a ``retention_report() -> str | None`` callable, given to :func:`create_app` or, when
not given, the ``retention_report`` attribute of ``services`` if it has one (None: no report).
The report is served on a route of its own with a strict Content-Security-Policy (no script,
no request anywhere, a sandbox of its own) and framed by the page in a sandboxed ``iframe``:
whatever the stored HTML holds, it cannot act in the console's origin.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import python_multipart  # noqa: F401 - request.form() needs it: fail at import, not on a POST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from dynamics_bridge.app.console import pages
from dynamics_bridge.app.console.auth import (
    CSRF_FIELD,
    AuthMode,
    ConsoleAuth,
    ConsoleUser,
    Refused,
    checked_form,
)
from dynamics_bridge.app.console.jobs import Job, JobBoard
from dynamics_bridge.app.status import (
    OUTCOMES,
    HealthLine,
    Overview,
    build_overview,
    events_by_source,
    health_lines,
)
from dynamics_bridge.errors import BridgeError, InputError, NotFoundError
from dynamics_bridge.ops.model import AuditRecord, PoisonFilter, PoisonRecord

if TYPE_CHECKING:
    from dynamics_bridge.app.poison import PoisonBook
    from dynamics_bridge.app.wiring import Services

__all__ = ["HostedConsole", "create_app"]

HERE = Path(__file__).parent
PAGE_SIZE = 50
#: the audit trail shown under the poison list: the last 30 days, at most 20 entries
AUDIT_DAYS, AUDIT_ROWS = 30, 20
#: Health is probed (one Dataverse read) at most this often; the overview reloads freely.
HEALTH_SECONDS = 30.0
VIA = "console"
#: The stored report: inline CSS and SVG only, in a sandbox (an origin of its own, no script,
#: no form), framed by the console only.
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'; sandbox"
)
REPORT_HEADERS = {
    "Content-Security-Policy": REPORT_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: What the Retention page says when no report was made yet.
REPORT_COMMAND = "dynamics-bridge retention report"
NO_REPORT = f"No retention report yet: run `{REPORT_COMMAND}`"
ReportReader = Callable[[], str | None]


def _no_report() -> str | None:
    return None


def report_reader(services: Any, given: ReportReader | None = None) -> ReportReader:
    """The Retention page's seam: ``given``, else ``services.retention_report`` when the
    wiring has one, else no report."""
    if given is not None:
        return given
    found = getattr(services, "retention_report", None)
    return found if callable(found) else _no_report


class _HealthCache:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._lock = threading.Lock()
        self._at = 0.0
        self._lines: list[HealthLine] = []

    def lines(self) -> list[HealthLine]:
        with self._lock:
            if not self._lines or time.monotonic() - self._at > HEALTH_SECONDS:
                self._lines = health_lines(self._services)
                self._at = time.monotonic()
            return list(self._lines)


def _when(value: str, name: str, *, end: bool = False) -> datetime | None:
    """A date (``2026-12-03``; ``end``: the day after, so "until" includes the day), an ISO
    time, or a time ago (``7d``, ``12h``), as UTC."""
    value = value.strip()
    if not value:
        return None
    ago = re.fullmatch(r"(\d{1,4})([dh])", value)
    if ago:
        amount = int(ago.group(1))
        delta = timedelta(days=amount) if ago.group(2) == "d" else timedelta(hours=amount)
        return datetime.now(UTC) - delta
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"not a date: {value!r} (YYYY-MM-DD, or a time ago: 7d, 12h)", location=name
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def poison_filter(params: Any) -> PoisonFilter:
    """The poison filter in a query string or form (empty fields match everything)."""

    def text(name: str) -> str | None:
        value = params.get(name)
        return value.strip() or None if isinstance(value, str) else None

    return PoisonFilter(
        reason=text("reason"),
        source=text("source"),
        since=_when(text("since") or "", "since"),
        until=_when(text("until") or "", "until", end=True),
        search=text("search"),
    )


def _filter_query(params: Any) -> dict[str, str]:
    return {
        k: str(params.get(k)).strip()
        for k in ("reason", "source", "since", "until", "search")
        if isinstance(params.get(k), str) and str(params.get(k)).strip()
    }


def create_app(
    services: Services,
    *,
    auth: AuthMode = "local",
    base: str = "",
    login_token: str | None = None,
    allowed_groups: Sequence[str] = (),
    allowed_roles: Sequence[str] = (),
    local_user: str | None = None,
    retention_report: ReportReader | None = None,
) -> ConsoleAuth:
    """The console over ``services``, behind its gate (:class:`ConsoleAuth`).

    ``base``: the path it is served under (``/api/console`` in the function app; "" locally).
    ``login_token``: the local mode's one-time sign-in token (``gate.new_login_token()`` makes
    one later). ``retention_report``: the latest retention report's HTML, None when there is
    none (default: ``services.retention_report`` if the wiring has it; see the module's doc).
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every value a page shows is escaped; charts come in marked |safe
    )
    templates = Jinja2Templates(env=env)
    board = JobBoard()
    health = _HealthCache(services)
    read_report = report_reader(services, retention_report)

    def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
        user: ConsoleUser = request.scope["console.user"]
        context.update(base=base, user=user, csrf_field=CSRF_FIELD, csrf=user.csrf)
        return templates.TemplateResponse(request, template, context, status_code=status)

    def book() -> PoisonBook:
        return services.poison_book

    # -- overview ------------------------------------------------------------------------
    def overview_data() -> Overview:
        return build_overview(services, health=health.lines())

    async def overview(request: Request) -> Response:
        data = await run_in_threadpool(overview_data)
        return render(
            request,
            "overview.html",
            page="overview",
            o=data,
            outcomes=OUTCOMES,
            today_sources=events_by_source(data.today),
            week_sources=events_by_source(data.week),
            today_outcomes=data.outcomes(data.today),
            week_outcomes=data.outcomes(data.week),
            trend=pages.poison_trend_chart([d.day for d in data.days], data.poison_by_day),
        )

    async def overview_json(request: Request) -> Response:
        data = await run_in_threadpool(overview_data)
        return JSONResponse(data.to_json())

    # -- history, segments, triggers, mapping ----------------------------------------------
    def _days(request: Request, default: int, allowed: tuple[int, ...]) -> int:
        raw = request.query_params.get("days", str(default))
        if not raw.isdigit() or int(raw) not in allowed:
            raise InputError(f"days must be one of {allowed}", location="days")
        return int(raw)

    def _chart_page(
        request: Request, data: dict[str, Any], template: str, **context: Any
    ) -> Response:
        """The page, or its JSON beside it (the figures without the drawn chart)."""
        if request.url.path.endswith(".json"):
            return JSONResponse({k: v for k, v in data.items() if k != "chart"})
        return render(request, template, **context)

    async def history(request: Request) -> Response:
        days = _days(request, 30, (7, 30, 90))
        data = await run_in_threadpool(lambda: pages.history(services, days=days))
        outcomes = list(pages.OUTCOME_COLORS)
        return _chart_page(request, data, "history.html", page="history", h=data, outcomes=outcomes)

    async def segments(request: Request) -> Response:
        days = _days(request, 30, (7, 30, 90))
        data = await run_in_threadpool(lambda: pages.segments(services, days=days))
        return _chart_page(request, data, "segments.html", page="segments", s=data)

    async def triggers(request: Request) -> Response:
        days = _days(request, 14, (7, 14, 30, 90))
        data = await run_in_threadpool(lambda: pages.triggers(services, days=days))
        measures = list(pages.MEASURE_COLORS)
        return _chart_page(
            request, data, "triggers.html", page="triggers", t=data, measures=measures
        )

    async def mapping(request: Request) -> Response:
        data = await run_in_threadpool(lambda: pages.mapping_check(services))
        if request.url.path.endswith(".json"):
            return JSONResponse(data)
        return render(request, "mapping.html", page="mapping", m=data)

    # -- retention ------------------------------------------------------------------------
    async def _report() -> tuple[str | None, str | None]:
        """(the report's HTML or None, why it could not be read or None)."""
        try:
            return await run_in_threadpool(read_report), None
        except BridgeError as exc:
            return None, str(exc) or type(exc).__name__

    async def retention(request: Request) -> Response:
        html, error = await _report()
        report_url = f"{base}/retention/report.html"
        if request.url.path.endswith(".json"):
            return JSONResponse(
                {
                    "available": html is not None,
                    "report": report_url if html is not None else None,
                    "error": error,
                    "empty": NO_REPORT if html is None and error is None else None,
                }
            )
        return render(
            request,
            "retention.html",
            page="retention",
            available=html is not None,
            error=error,
            report_url=report_url,
            command=REPORT_COMMAND,
        )

    async def retention_report_page(request: Request) -> Response:
        html, error = await _report()
        if error is not None:
            return PlainTextResponse(
                f"the retention report could not be read: {error}", 503, headers=REPORT_HEADERS
            )
        if html is None:
            raise NotFoundError(NO_REPORT)
        return HTMLResponse(html, headers=REPORT_HEADERS)

    # -- poison --------------------------------------------------------------------------
    async def poison(request: Request) -> Response:
        where = poison_filter(request.query_params)
        cursor = request.query_params.get("cursor") or None

        def read() -> tuple[list[PoisonRecord], str | None, int, list[AuditRecord]]:
            from dynamics_bridge.app.poison import masked

            b = book()
            page = b.page(where, limit=PAGE_SIZE, cursor=cursor)
            # Who replayed or purged what lately: the audit trail, beside what is left.
            audits = services.ops.audits(datetime.now(UTC) - timedelta(days=AUDIT_DAYS))
            return [masked(r) for r in page.records], page.cursor, b.count(where), audits

        records, next_cursor, count, audits = await run_in_threadpool(read)
        query = _filter_query(request.query_params)
        if request.url.path.endswith(".json"):
            return JSONResponse(
                {
                    "count": count,
                    "filter": where.describe(),
                    "cursor": next_cursor,
                    "records": [
                        {
                            "message_id": r.message_id,
                            "failed_at": r.failed_at.isoformat(),
                            "reason": r.reason,
                            "category": r.category,
                            "source": r.source,
                            "events": len(r.event_ids),
                            "file": r.file,
                        }
                        for r in records
                    ],
                }
            )
        return render(
            request,
            "poison.html",
            page="poison",
            records=records,
            count=count,
            next_cursor=next_cursor,
            cursor=cursor,
            query=query,
            where=where,
            audits=audits[:AUDIT_ROWS],
        )

    async def poison_message(request: Request) -> Response:
        message_id = request.path_params["message_id"]

        def read() -> PoisonRecord:
            from dynamics_bridge.app.poison import masked

            return masked(book().show(message_id))

        record = await run_in_threadpool(read)
        try:
            body = json.dumps(json.loads(record.body), indent=2, ensure_ascii=False)
        except ValueError:
            body = record.body
        return render(request, "poison_message.html", page="poison", r=record, body=body)

    def _start(action: str, request: Request, where: PoisonFilter | None, ids: list[str]) -> Job:
        user: ConsoleUser = request.scope["console.user"]
        what = ", ".join(ids) if ids else (where or PoisonFilter()).describe()

        def work(job: Job) -> dict[str, Any]:
            b = book()
            if action == "replay":
                report = b.replay(where, ids, who=user.name, via=VIA, progress=job.progress)
                return {
                    "messages": report.messages,
                    "events": report.events,
                    "skipped": list(report.skipped),
                }
            purged = b.purge(where, ids, who=user.name, via=VIA, progress=job.progress)
            return {"purged": purged}

        return board.start(action, what, user.name, work)

    def _selection(form: Any) -> tuple[PoisonFilter | None, list[str]]:
        ids = [str(v) for v in form.getlist("ids") if str(v).strip()]
        if form.get("scope") == "matching":
            return poison_filter(form), []
        if not ids:
            raise InputError("select at least one message, or replay all matching", location="ids")
        return None, ids

    async def replay(request: Request) -> Response:
        form = await checked_form(request)
        where, ids = _selection(form)
        job = _start("replay", request, where, ids)
        return RedirectResponse(f"{base}/jobs/{job.job_id}", status_code=303)

    async def purge_confirm(request: Request) -> Response:
        where = poison_filter(request.query_params)
        ids = [v for v in request.query_params.getlist("ids") if v.strip()]

        def count() -> int:
            if ids:
                return len(ids)
            return int(book().count(where))

        n = await run_in_threadpool(count)
        return render(
            request,
            "purge_confirm.html",
            page="poison",
            count=n,
            ids=ids,
            where=where,
            query=_filter_query(request.query_params),
        )

    async def purge(request: Request) -> Response:
        form = await checked_form(request)
        if form.get("confirm") != "yes":
            raise InputError("a purge needs its confirmation page", location="confirm")
        ids = [str(v) for v in form.getlist("ids") if str(v).strip()]
        where = None if ids else poison_filter(form)
        job = _start("purge", request, where, ids)
        return RedirectResponse(f"{base}/jobs/{job.job_id}", status_code=303)

    async def job_page(request: Request) -> Response:
        job = board.get(request.path_params["job_id"])
        if job is None:
            raise NotFoundError(f"no job {request.path_params['job_id']} (finished long ago?)")
        if request.url.path.endswith(".json"):
            return JSONResponse(job.to_json())
        return render(request, "job.html", page="poison", job=job)

    async def logout(request: Request) -> Response:
        await checked_form(request)
        gate.end_session(request)
        response = RedirectResponse(f"{base}/login", status_code=303)
        response.delete_cookie("bridge_console", path=base or "/")
        return response

    # -- errors --------------------------------------------------------------------------
    def error_page(status: int, title: str, message: str) -> Callable[..., Any]:
        async def handler(request: Request, exc: Exception) -> Response:
            if "console.user" not in request.scope:
                return HTMLResponse(message, status_code=status)
            return render(
                request, "error.html", status=status, page="", title=title, message=message
            )

        return handler

    async def on_not_found(request: Request, exc: Exception) -> Response:
        return await error_page(404, "Not found", str(exc))(request, exc)

    async def on_input(request: Request, exc: Exception) -> Response:
        return await error_page(400, "Not understood", str(exc))(request, exc)

    async def on_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return await error_page(exc.status, "Refused", exc.message)(request, exc)

    routes: list[BaseRoute] = [
        Route("/", overview, name="overview"),
        Route("/overview.json", overview_json),
        Route("/history", history, name="history"),
        Route("/history.json", history),
        Route("/poison", poison, name="poison"),
        Route("/poison.json", poison),
        Route("/poison/replay", replay, methods=["POST"]),
        Route("/poison/purge", purge_confirm, methods=["GET"]),
        Route("/poison/purge", purge, methods=["POST"]),
        Route("/poison/{message_id}", poison_message),
        Route("/jobs/{job_id}.json", job_page),
        Route("/jobs/{job_id}", job_page),
        Route("/segments", segments, name="segments"),
        Route("/segments.json", segments),
        Route("/triggers", triggers, name="triggers"),
        Route("/triggers.json", triggers),
        Route("/mapping", mapping, name="mapping"),
        Route("/mapping.json", mapping),
        Route("/retention", retention, name="retention"),
        Route("/retention.json", retention),
        Route("/retention/report.html", retention_report_page),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    inner = Starlette(
        routes=[Mount(base, routes=routes)] if base else routes,
        exception_handlers={
            NotFoundError: on_not_found,
            InputError: on_input,
            Refused: on_refused,
        },
    )
    gate = ConsoleAuth(
        inner,
        mode=auth,
        base=base,
        login_token=login_token,
        allowed_groups=allowed_groups,
        allowed_roles=allowed_roles,
        local_user=local_user,
    )
    gate.jobs = board
    return gate


class HostedConsole:
    """The console as the function app serves it: built on the first request (nothing at
    import: a missing setting must not stop the app starting), Easy Auth only.

    Settings that do not load answer 503 naming the variables; ``BRIDGE_CONSOLE__AUTH`` not
    ``easyauth`` answers 403 for everything (there is no terminal to print a sign-in link)."""

    def __init__(self, services: Services, base: str = "/api/console") -> None:
        self._services = services
        self._base = base
        self._app: Any = None
        self._lock = threading.Lock()

    def _build(self) -> Any:
        from starlette.responses import PlainTextResponse

        from dynamics_bridge.errors import ConfigError

        try:
            settings = self._services.settings.console
        except ConfigError as exc:
            names = sorted({p.split(":", 1)[0] for p in exc.problems})
            return PlainTextResponse(f"settings do not load: {', '.join(names)}", 503)
        if settings.auth != "easyauth":
            return PlainTextResponse(
                "the console in the function app needs App Service Authentication: set "
                "BRIDGE_CONSOLE__AUTH=easyauth and BRIDGE_CONSOLE__ALLOWED_GROUPS (or _ROLES)",
                403,
            )
        return create_app(
            self._services,
            auth="easyauth",
            base=self._base,
            allowed_groups=settings.allowed_groups,
            allowed_roles=settings.allowed_roles,
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # nothing to start or stop
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        app = self._app
        if app is None:
            with self._lock:
                app = self._app or self._build()
                if isinstance(app, ConsoleAuth):
                    self._app = app  # a refusal is not kept: a fixed setting needs no restart
        await app(scope, receive, send)
