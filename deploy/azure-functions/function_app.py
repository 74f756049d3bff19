"""dynamics_bridge as an Azure Functions app (Python v2 programming model).

Each function adapts one trigger to a handler in the library and does nothing else:

- ``POST /api/webhooks/swish``, ``POST /api/webhooks/billogram``: anonymous at the HTTP level;
  the handler authenticates (IP allow-list and callback identifier; HMAC signature) and queues.
- blob ``bankgirot-incoming/{name}`` (Event Grid source, the one Flex Consumption supports): the
  file is checked whole, then queued; a receipt lands in ``bankgirot-receipts/{name}.json``.
- queue ``%BRIDGE_QUEUE__NAME%`` (``payment-events``): the pipeline writes Dataverse.
- timers: the trigger outbox every 5 minutes (``%BRIDGE_ACTIVATION__TRIGGER_SWEEP_SCHEDULE%``),
  the poison queue into the poison book every 5 minutes (logging what waits for the alert),
  segments every 15 minutes, reminders daily, SPAR address refresh nightly, housekeeping (run
  history past its retention) nightly, retention analytics weekly (opt-in); every message,
  file and timer run is recorded
  (``dynamics_bridge.app.runs``).
- ``GET /api/health`` (function key): configuration and reachability, no secrets.
- ``/api/console/...``: the admin console (anonymous at the Functions layer: App Service
  Authentication with Entra ID stands in front, and the console refuses a request without an
  allowed principal; ``BRIDGE_CONSOLE__*``).

Nothing is built at import (Flex gives an app 30 s to start): settings, clients and the pipeline
are made on first use and shared by the invocations of one worker process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import azure.functions as func

from dynamics_bridge.app import handlers, health, jobs, runs
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.hosting import queue_host_options
from dynamics_bridge.logs import configure_host_logging
from dynamics_bridge.settings import Settings

HOST_JSON = json.loads(Path(__file__).with_name("host.json").read_text(encoding="utf-8"))
#: What the host runs the queue trigger with (host.json, then AzureFunctionsJobHost__ overrides).
QUEUE_OPTIONS = queue_host_options(HOST_JSON, os.environ)
STORAGE = "AzureWebJobsStorage"  # by identity in Azure: AzureWebJobsStorage__accountName


def _logging(settings: Settings) -> None:
    configure_host_logging(settings.log.level, secrets=settings.secrets())


configure_host_logging()  # JSON and masking from the first line; secrets once settings load
services = Services(on_settings=_logging, queue_options=QUEUE_OPTIONS)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _json(status: int, body: dict) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False), status_code=status, mimetype="application/json"
    )


def _webhook(provider: str, req: func.HttpRequest) -> func.HttpResponse:
    # ``req.get_body`` uncalled: the handler refuses an over-long Content-Length before it looks
    # at the body. In this (non-streaming) model the host has already buffered the body, up to
    # FUNCTIONS_REQUEST_BODY_SIZE_LIMIT (100 MB by default): the early refusal spares hashing
    # and parsing, and only the host's limit stops the reading itself. ``req.headers`` is
    # azure.functions' mapping: names lower-cased, so two spellings arrive as one name.
    result = handlers.handle_webhook_request(provider, req.get_body, dict(req.headers), services)
    return _json(result.status, result.body)


@app.function_name("swish_webhook")
@app.route(route="webhooks/swish", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def swish_webhook(req: func.HttpRequest) -> func.HttpResponse:
    return _webhook("swish", req)


@app.function_name("billogram_webhook")
@app.route(route="webhooks/billogram", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def billogram_webhook(req: func.HttpRequest) -> func.HttpResponse:
    return _webhook("billogram", req)


@app.function_name("bankgirot_file")
@app.blob_trigger(
    arg_name="blob",
    path="bankgirot-incoming/{name}",
    connection=STORAGE,
    source=func.BlobSource.EVENT_GRID,
)
@app.blob_output(arg_name="receipt", path="bankgirot-receipts/{name}.json", connection=STORAGE)
def bankgirot_file(blob: func.InputStream, receipt: func.Out[str]) -> None:
    settings = services.settings
    done = handlers.handle_bankgirot_file(
        blob,  # type: ignore[arg-type]
        blob.name or "bankgirot-incoming/?",
        settings=settings.bankgirot,
        queue=services.queue,
        ops=runs.store_of(services),
        tasks=services.mandate_tasks,
    )
    receipt.set(json.dumps(done.to_json(), ensure_ascii=False))


@app.function_name("payment_events")
@app.queue_trigger(arg_name="msg", queue_name="%BRIDGE_QUEUE__NAME%", connection=STORAGE)
def payment_events(msg: func.QueueMessage) -> None:
    handlers.handle_queue_message(
        msg.get_body(),
        message_id=msg.id or "",
        dequeue_count=int(msg.dequeue_count or 1),
        pipeline=services.pipeline,
        queue=services.queue,
        max_dequeue_count=QUEUE_OPTIONS.max_dequeue_count,
        ops=runs.store_of(services),
    )


@app.function_name("triggers")
@app.timer_trigger(
    arg_name="timer", schedule="%BRIDGE_ACTIVATION__TRIGGER_SWEEP_SCHEDULE%", use_monitor=True
)
def triggers(timer: func.TimerRequest) -> None:
    """The trigger outbox: held, left-over and unconfirmed triggers (a crash, an outage)."""
    jobs.run_job("triggers", services, past_due=timer.past_due)


@app.function_name("poison")
@app.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", use_monitor=True)
def poison(timer: func.TimerRequest) -> None:
    """The poison queue into the poison book; logs what waits there (the poison alert's line)."""
    jobs.run_job("poison", services, past_due=timer.past_due)


@app.function_name("segments")
@app.timer_trigger(arg_name="timer", schedule="0 */15 * * * *", use_monitor=True)
def segments(timer: func.TimerRequest) -> None:
    jobs.run_job("segments", services, past_due=timer.past_due)


@app.function_name("reminders")
@app.timer_trigger(arg_name="timer", schedule="0 0 6 * * *", use_monitor=True)  # 06:00 UTC
@app.retry(
    strategy="exponential_backoff",
    max_retry_count="3",
    minimum_interval="00:01:00",
    maximum_interval="00:15:00",
)
def reminders(timer: func.TimerRequest) -> None:
    jobs.run_job("reminders", services, past_due=timer.past_due)


@app.function_name("address_refresh")
@app.timer_trigger(arg_name="timer", schedule="0 30 1 * * *", use_monitor=True)  # 01:30 UTC
@app.retry(
    strategy="exponential_backoff",
    max_retry_count="3",
    minimum_interval="00:05:00",
    maximum_interval="00:30:00",
)
def address_refresh(timer: func.TimerRequest) -> None:
    jobs.run_job("address_refresh", services, past_due=timer.past_due)


@app.function_name("housekeeping")
@app.timer_trigger(arg_name="timer", schedule="0 45 2 * * *", use_monitor=True)  # 02:45 UTC
def housekeeping(timer: func.TimerRequest) -> None:
    """Run history and audits older than BRIDGE_OPS__RETENTION_DAYS (90) go."""
    jobs.run_job("housekeeping", services, past_due=timer.past_due)


@app.function_name("retention")
@app.timer_trigger(arg_name="timer", schedule="0 0 4 * * 1", use_monitor=True)  # Mon 04:00 UTC
def retention(timer: func.TimerRequest) -> None:
    """Weekly: retrain the churn model, find themes, score, make advisor tasks, report. Off
    unless BRIDGE_RETENTION__ENABLED (profiling is opt-in)."""
    jobs.run_job("retention", services, past_due=timer.past_due)


@app.function_name("health")
@app.route(route="health", methods=["GET"])
def health_check(req: func.HttpRequest) -> func.HttpResponse:
    report = health.check_health(
        services, os.environ, queue_options=QUEUE_OPTIONS, jobs=jobs.available()
    )
    return _json(report.status, report.body)


_console: func.AsgiMiddleware | None = None


@app.function_name("console")
@app.route(route="console/{*path}", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def admin_console(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """The admin console (dynamics_bridge.app.console), built on its first request."""
    global _console
    if _console is None:
        from dynamics_bridge.app.console import HostedConsole

        _console = func.AsgiMiddleware(HostedConsole(services, base="/api/console"))
    return await _console.handle_async(req, context)
