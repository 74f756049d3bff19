"""The admin console: server-rendered pages over the same functions as the CLI.

``create_app(services, auth="local"|"easyauth", base=..., login_token=...)`` gives an ASGI app
(Starlette, Jinja2 templates, one CSS file, charts as inline SVG from
:mod:`dynamics_bridge.ops.charts`; nothing is fetched from another host). Served by
``dynamics-bridge console`` locally and by the function app's ``console/{*path}`` route in Azure
(behind App Service Authentication). Every page has its JSON beside it (``/overview.json``,
``/history.json?days=90``, ``/poison.json?reason=…``, ``/retention.json``, ...).

Stable element ids and classes (for browser tests; keep them when restyling):

- every page: ``#nav`` with ``#nav-overview``, ``#nav-history``, ``#nav-poison``,
  ``#nav-segments``, ``#nav-triggers``, ``#nav-mapping``, ``#nav-retention`` (``.current`` on
  the open one);
  ``#user`` (who is signed in); ``main`` has the page's id (``#overview``, ``#poison``...);
  ``#logout-button`` (local mode).
- Overview ``main#overview``: ``#health`` (``data-state`` ok|red) with ``li#health-<part>``
  (parts settings, dataverse, apsis, spar, queue; ``data-state`` ok|red|off, ``.reason``);
  ``#queue-messages``, ``#queue-poison``; ``#poison-total`` and ``#poison-today``
  (``data-count``), ``svg#poison-trend-chart``; ``table#today-outcomes`` and
  ``table#week-outcomes`` (rows ``tr[data-source]``, cells ``td[data-outcome]``; footer row
  ``data-source="all"``); ``table#files-table`` rows ``tr.file-run`` (``.file-name``,
  ``.receipt``, ``.queued``); ``table#timers-table`` rows ``tr#timer-<name>`` (``data-state``
  ok|red|never); ``#overview-json``.
- History ``main#history``: ``#days-7``, ``#days-30``, ``#days-90``; ``svg#history-chart``
  (bars ``rect.chart-bar`` with ``data-series``, ``data-label``, ``data-value``);
  ``table#history-table`` (``tr[data-day]``, ``td[data-outcome]``).
- Poison ``main#poison``: ``form#poison-filter`` with ``#filter-reason``, ``#filter-source``,
  ``#filter-since``, ``#filter-until`` (dates), ``#filter-search``, ``#filter-apply``,
  ``#filter-clear``; ``#poison-count`` (``data-count``); ``table#poison-list`` rows
  ``tr.poison-row[data-id]`` with ``input.poison-select`` and ``td.message-id a``;
  ``#select-all``; ``#replay-selected``, ``#replay-matching``, ``#purge-matching``;
  ``#next-page``, ``#first-page``.
- One message ``main#poison-message``: ``#message-id``, ``#message-reason``,
  ``#message-member-refs`` (``code.member-ref``, masked), ``#message-body`` (masked),
  ``#replay-one``, ``#purge-one``.
- Purge confirmation ``main#purge-confirm``: ``#purge-count`` (``data-count``),
  ``#purge-confirm-button``, ``#purge-cancel``.
- A replay or purge ``main#job``: ``#job-panel`` (``data-finished`` yes|no), ``#job-state``
  (running|finished|failed), ``#job-progress``, ``#job-done``, ``#job-total``, ``#job-result``
  with ``#job-messages``, ``#job-events`` (replay) or ``#job-purged`` (purge).
- Segments ``main#segments``: ``svg#segments-chart`` (``circle.chart-point``);
  ``#last-push-table`` rows ``tr[data-segment]`` (``.size``, ``.added``, ``.removed``).
- Triggers ``main#triggers``: ``#outbox`` with ``#outbox-pending``, ``#outbox-unconfirmed``
  (or ``#outbox-off``); ``svg#triggers-chart``; ``table#triggers-table``
  (``tr[data-day][data-type]``, ``td[data-measure]``).
- Mapping ``main#mapping`` (what ``dynamics-bridge check`` finds): ``#mapping-state``
  (``data-state`` ok|problems), ``#mapping-checked``, ``#mapping-folder``,
  ``span.mapping-file[data-file][data-present]``; ``table#mapping-errors`` and
  ``table#mapping-warnings`` with rows ``tr.mapping-problem[data-area]`` (``.what``, ``.fix``).
- Retention ``main#retention`` (the latest report of ``dynamics-bridge retention report``,
  read through ``retention_report()``: see :mod:`.web`): ``iframe#retention-report``
  (sandboxed; its document is ``/retention/report.html``, served with a strict CSP) and
  ``#retention-open``; or ``#retention-empty`` with ``#retention-command``; or
  ``#retention-error``; ``#retention-json``.
- Refusals: ``main#refused`` (``data-status`` 401|403); errors ``#error-message``.
"""

from __future__ import annotations

from dynamics_bridge.app.console.auth import ConsoleAuth, ConsoleUser
from dynamics_bridge.app.console.web import HostedConsole, create_app

__all__ = ["ConsoleAuth", "ConsoleUser", "HostedConsole", "create_app"]
