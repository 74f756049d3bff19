"""One check of the whole configuration, for every way in: ``dynamics-bridge check``, the
function app's ``/api/health`` and the timers (and the console's Mapping page).

It reports every problem in one run, each as a :class:`Finding` (where, what is wrong, what to
do; an error or a warning), and says which mapping files the folder holds. The offline part
(settings, the mapping files, the SPAR contract files) costs no call to anyone
(``check --offline``); ``live=True`` adds the Dataverse metadata and the APSIS definitions and
event fields: what ``check`` runs, and what the function app and its timers run at start
(:meth:`~dynamics_bridge.app.wiring.Services.startup_check`, kept for a while, with Dataverse or
APSIS out of reach a warning there).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from dynamics_bridge.errors import BridgeError, ConfigError, TransientError

if TYPE_CHECKING:
    from dynamics_bridge.activation.config import ActivationConfig
    from dynamics_bridge.apsis.port import MarketingPlatform
    from dynamics_bridge.dataverse.client import DataverseClient
    from dynamics_bridge.mapping import MappingFile
    from dynamics_bridge.mapping.retention import RetentionFile
    from dynamics_bridge.settings import Settings

__all__ = [
    "ACTIVATION_FILES",
    "MAPPING_FILE",
    "CheckReport",
    "Finding",
    "run_check",
]

log = logging.getLogger("dynamics_bridge.check")

Severity = Literal["error", "warning"]
#: What a finding is about: a job refuses to run on an error in an area it needs.
Area = Literal["settings", "mappings", "dataverse", "apsis", "spar"]

MAPPING_FILE = "dataverse.yaml"
ACTIVATION_FILES = ("apsis.yaml", "triggers.yaml", "segments.yaml")
RETENTION_FILE = "retention.yaml"

SET_IT = "set it in the environment or .env (in Azure: an application setting of the function app)"
EDIT_IT = "correct the file (`dynamics-bridge schema` writes the rules for editors)"
PROVISION = "run `dynamics-bridge provision` to see the plan, then `provision --apply`"
_RUN_PROVISION = "run `dynamics-bridge provision`"  # how provision.check_metadata says it


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: ``where`` is a setting, ``file:line:col`` or a file and entry."""

    severity: Severity
    area: Area
    where: str
    what: str
    fix: str

    def text(self) -> str:
        place = f"{self.where}: " if self.where else ""
        return f"{place}{self.what} (to do: {self.fix})"

    def to_json(self) -> dict[str, str]:
        return {
            "severity": self.severity,
            "area": self.area,
            "where": self.where,
            "what": self.what,
            "fix": self.fix,
        }


@dataclass(slots=True)
class CheckReport:
    """Every finding of one run, and which mapping files the folder holds."""

    folder: Path
    files: dict[str, bool] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    live: bool = False

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def errors_in(self, areas: Iterable[str]) -> list[Finding]:
        wanted = set(areas)
        return [f for f in self.errors if f.area in wanted]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "folder": str(self.folder),
            "files": dict(self.files),
            "live": self.live,
            "errors": [f.to_json() for f in self.errors],
            "warnings": [f.to_json() for f in self.warnings],
        }

    def add(self, severity: Severity, area: Area, where: str, what: str, fix: str) -> None:
        self.findings.append(Finding(severity, area, where, what, fix))

    def add_problems(
        self, problems: Iterable[str], area: Area, fix: str, severity: Severity = "error"
    ) -> None:
        """Findings from ``place: message`` strings (ConfigError's problems)."""
        for problem in problems:
            where, what = split_problem(problem)
            self.add(severity, area, where, what, fix)


_FILE_PLACE = re.compile(r"^(?P<where>.+?:\d+:\d+): (?P<what>.*)$", re.DOTALL)
_ENTRY_PLACE = re.compile(r"^(?P<where>[^\s:]+\.yaml: [^\s:]+): (?P<what>.*)$", re.DOTALL)
_SETTING_PLACE = re.compile(r"^(?P<where>BRIDGE_\w+(?: \([^)]*\))?): (?P<what>.*)$", re.DOTALL)


def split_problem(problem: str) -> tuple[str, str]:
    """``(where, what)`` of one problem: ``file:line:col``, ``file.yaml: entry`` or a setting."""
    for pattern in (_FILE_PLACE, _ENTRY_PLACE, _SETTING_PLACE):
        if found := pattern.match(problem):
            return found.group("where"), found.group("what")
    return "", problem


def run_check(
    settings: Settings | None = None,
    *,
    mapping_path: Path | str | None = None,
    live: bool = True,
    need_dataverse: bool = True,
    wiring: Callable[[Settings], Wiring] | None = None,
    dataverse: Callable[[], DataverseClient] | None = None,
    marketing: Callable[[ActivationConfig], MarketingPlatform | None] | None = None,
    unreachable: Severity = "error",
    history: bool = False,
    today: date | None = None,
) -> CheckReport:
    """Check everything ``settings`` (default: the environment) and the mappings folder name.

    ``mapping_path``: a dataverse.yaml elsewhere (its folder then holds the other files).
    ``need_dataverse=False``: the caller brings its own Dataverse client (tests, the demo), so
    the Dataverse settings are not required. ``wiring``: the
    :class:`~dynamics_bridge.app.wiring.Services` over these settings, which builds the SPAR
    client (its contract files are parsed) and the live part's clients; without it those are
    not checked. ``dataverse``/``marketing`` override the wiring's clients (tests).
    ``unreachable``: what Dataverse or APSIS out of reach (a passing failure: network, DNS,
    an outage) counts as; an error for ``check``, a warning for the function app's start check
    (a job then meets the outage itself and retries). A mismatch is always an error.
    ``history``: also read the leavers to say whether the retention analytics have enough to
    work on (the CLI's check; the start check leaves it to the weekly run)."""
    from dynamics_bridge.settings import load_settings, salvage_settings

    problems: list[str] = []
    if settings is None:
        try:
            settings = load_settings()
        except ConfigError as exc:
            problems = exc.problems
    # Settings that fail to validate are read again with each failing value at its default,
    # so what the others lack shows in this run too (nothing is called on them: no live part).
    salvaged = salvage_settings(problems) if problems else None
    usable = settings or salvaged
    folder = _folder(usable, mapping_path)
    report = CheckReport(folder=folder, live=live)
    report.add_problems(problems, "settings", SET_IT)
    mapping_file = Path(mapping_path) if mapping_path is not None else folder / MAPPING_FILE
    report.files = {
        MAPPING_FILE: mapping_file.is_file(),
        **{name: (folder / name).is_file() for name in (*ACTIVATION_FILES, RETENTION_FILE)},
    }
    built: Wiring | None = None
    if settings is not None and wiring is not None:
        built = wiring(settings)
    if usable is not None:
        named = {f.where for f in report.findings}
        before = len(report.findings)
        _settings_findings(report, usable, need_dataverse=need_dataverse)
        _spar_findings(report, usable, built)
        # A value already refused is not reported again as missing (it was reset to unset).
        report.findings[before:] = [f for f in report.findings[before:] if f.where not in named]
    mapping = _mapping(report, mapping_file)
    config = _activation(report, mapping, folder)
    retention = _retention(
        report, mapping, config, folder, enabled=bool(usable and usable.retention.enabled)
    )
    if not live or settings is None or mapping is None:
        return report
    if dataverse is None and built is not None and settings.dataverse.configured:
        dataverse = built.dataverse_probe  # one attempt, a short timeout
    if marketing is None and built is not None and _apsis_credentials(settings):
        marketing = built.apsis_platform_for
    if dataverse is not None:
        _dataverse_findings(report, mapping, dataverse, mapping_file, unreachable)
        if history and retention is not None and report.ok:
            _history_findings(
                report, retention, mapping, dataverse, today or datetime.now(UTC).date()
            )
    if config is not None and marketing is not None:
        _apsis_findings(report, config, marketing, unreachable)
    return report


class Wiring(Protocol):
    """What the check asks of :class:`~dynamics_bridge.app.wiring.Services`."""

    def dataverse_probe(self) -> DataverseClient: ...

    @property
    def spar(self) -> Any: ...

    def apsis_platform_for(self, config: ActivationConfig) -> MarketingPlatform | None: ...


def _apsis_credentials(settings: Settings) -> bool:
    return bool(settings.apsis.client_id and settings.apsis.client_secret)


def _folder(settings: Settings | None, mapping_path: Path | str | None) -> Path:
    if mapping_path is not None:
        return Path(mapping_path).parent
    if settings is not None:
        return settings.mappings
    from dynamics_bridge.mapping.loader import MAPPINGS_DIR

    chosen = os.environ.get("BRIDGE_MAPPINGS_DIR")  # settings failed: read it as they would
    return Path(chosen) if chosen else MAPPINGS_DIR


def _settings_findings(report: CheckReport, settings: Settings, *, need_dataverse: bool) -> None:
    if need_dataverse:
        report.add_problems(settings.dataverse.problems(), "dataverse", SET_IT)
    apsis = settings.apsis
    if bool(apsis.client_id) != bool(apsis.client_secret):
        missing = "CLIENT_SECRET" if apsis.client_id else "CLIENT_ID"
        report.add(
            "error",
            "apsis",
            f"BRIDGE_APSIS__{missing}",
            "required with the other half of the APSIS API key",
            SET_IT + "; or unset both to run without APSIS",
        )
    # Warnings: a union without Swish (or Bankgirot files) needs neither, but one with it must
    # learn here, not from refused input.
    report.add_problems(
        settings.swish.problems() + settings.bankgirot.problems(),
        "settings",
        SET_IT + " if the union uses it",
        severity="warning",
    )


def _spar_findings(report: CheckReport, settings: Settings, wiring: Wiring | None) -> None:
    """SPAR, when any of its settings is set: what a lookup needs, and the contract files
    (the WSDL exists and parses with its schemas, read from disk only)."""
    spar = settings.spar
    named = ("endpoint", "customer_number", "assignment_id", "end_user_id", "wsdl_path")
    if not any(getattr(spar, name) for name in named):
        return
    missing = spar.problems() + spar.contract_problems()
    if missing:
        report.add_problems(missing, "spar", SET_IT)
        return
    if wiring is None:
        return
    try:
        wiring.spar  # noqa: B018 - built: parses the WSDL and schemas, asks SPAR nothing
    except ConfigError as exc:
        report.add_problems(
            exc.problems,
            "spar",
            "point BRIDGE_SPAR__WSDL_PATH at the personsok.wsdl SPAR gave you, with its "
            "schemas beside it (BRIDGE_SPAR__SCHEMA_ROOT)",
        )
    except BridgeError as exc:
        report.add("error", "spar", "BRIDGE_SPAR__*", str(exc), SET_IT)


def _mapping(report: CheckReport, path: Path) -> MappingFile | None:
    from dynamics_bridge.mapping import load_mapping

    if not path.is_file():
        report.add(
            "error",
            "mappings",
            str(path),
            "the Dataverse mapping is missing",
            "set BRIDGE_MAPPINGS_DIR to the folder holding dataverse.yaml (or restore the file)",
        )
        return None
    try:
        return load_mapping(path)
    except ConfigError as exc:
        report.add_problems(exc.problems, "mappings", _fix_for(exc.problems))
        return None


def _fix_for(problems: list[str]) -> str:
    if any("not UTF-8" in p for p in problems):
        return "save the file as UTF-8, then run `dynamics-bridge check` again"
    return EDIT_IT


def _activation(
    report: CheckReport, mapping: MappingFile | None, folder: Path
) -> ActivationConfig | None:
    """The three activation files: all there (read and cross-checked), all absent (activation
    off: said, not an error), or some missing (an error naming each). Without a valid
    dataverse.yaml each file present is still read on its own, so its problems show too."""
    from dynamics_bridge.activation.loader import ACTIVATION_FILES as MODELS
    from dynamics_bridge.activation.loader import load_activation
    from dynamics_bridge.mapping.loader import load_config

    present = [name for name in ACTIVATION_FILES if report.files[name]]
    if not present:
        report.add(
            "warning",
            "mappings",
            str(folder),
            "no apsis.yaml, triggers.yaml or segments.yaml: triggers, segments and reminders "
            "are off",
            "add the three files to use APSIS One",
        )
        return None
    if len(present) < len(ACTIVATION_FILES):
        for name in ACTIVATION_FILES:
            if not report.files[name]:
                report.add(
                    "error",
                    "mappings",
                    str(folder / name),
                    f"missing, while {', '.join(present)} "
                    f"{'is' if len(present) == 1 else 'are'} there: the three go together",
                    f"restore {name} (the bridge's mappings/{name} is a start), or remove all "
                    "three to run without APSIS",
                )
    if mapping is None or len(present) < len(ACTIVATION_FILES):
        for name in present:
            try:
                load_config(
                    MODELS[name.removesuffix(".yaml")],
                    folder / name,
                    prefix=mapping.publisher_prefix if mapping else None,
                )
            except ConfigError as exc:
                report.add_problems(exc.problems, "mappings", _fix_for(exc.problems))
        return None
    try:
        return load_activation(mapping, folder)
    except ConfigError as exc:
        report.add_problems(exc.problems, "mappings", _fix_for(exc.problems))
        return None


def _retention(
    report: CheckReport,
    mapping: MappingFile | None,
    activation: ActivationConfig | None,
    folder: Path,
    *,
    enabled: bool,
) -> RetentionFile | None:
    """retention.yaml, when there: read, its columns against dataverse.yaml, and no APSIS
    attribute carrying a leaving reason. Missing while BRIDGE_RETENTION__ENABLED is an error."""
    from dynamics_bridge.mapping.loader import load_config
    from dynamics_bridge.mapping.retention import RetentionFile, cross_check

    path = folder / RETENTION_FILE
    if not report.files[RETENTION_FILE]:
        if enabled:
            report.add(
                "error",
                "mappings",
                str(path),
                "missing, while BRIDGE_RETENTION__ENABLED is on",
                "restore retention.yaml (the bridge's mappings/retention.yaml is a start), or "
                "turn the retention analytics off",
            )
        return None
    try:
        retention = load_config(
            RetentionFile, path, prefix=mapping.publisher_prefix if mapping else None
        )
    except ConfigError as exc:
        report.add_problems(exc.problems, "mappings", _fix_for(exc.problems))
        return None
    if mapping is None:
        return None
    problems = cross_check(retention, mapping, activation)
    report.add_problems([str(folder / p) for p in problems], "mappings", EDIT_IT)
    return None if problems else retention


def _history_findings(
    report: CheckReport,
    retention: RetentionFile,
    mapping: MappingFile,
    dataverse: Callable[[], DataverseClient],
    today: date,
) -> None:
    """Whether the register can support the analytics: enough leavers in the training window,
    and leaving reasons recorded for the recent ones. One read of the leavers (a small share
    of the members); warnings, since the sync does not need them."""
    from dynamics_bridge.mapping.retention import has_reason, leaver_window

    h = retention.history
    start, split, themes_from = leaver_window(retention, today)
    reason = h.leaving_reason.column if h.leaving_reason else None
    select = [mapping.member.id_column, h.ended_on, *(c for c in (reason, h.leaving_text) if c)]
    try:
        rows = list(
            dataverse().rows.query(
                mapping.member.entity_set,
                select=select,
                filter=f"{h.ended_on} ge {start} and {h.ended_on} lt {today}",
            )
        )
    except BridgeError as exc:
        report.add(
            "warning",
            "dataverse",
            f"Dataverse: {mapping.member.entity_set}",
            f"the leavers could not be read for the retention check: {_one_line(str(exc))}",
            "run `dynamics-bridge check` again once Dataverse answers",
        )
        return
    where = f"{report.folder / RETENTION_FILE}: churn.min_leavers"
    trained = sum(1 for r in rows if str(r.get(h.ended_on) or "")[:10] < split.isoformat())
    if trained < retention.churn.min_leavers:
        report.add(
            "warning",
            "mappings",
            where,
            f"only {trained} member(s) left between {start} and {split} (the training window); "
            "the churn model needs "
            f"{retention.churn.min_leavers}, so `retention train` will train nothing",
            "check that history.ended_on is filled for former members (and that they are kept), "
            "or lower churn.min_leavers",
        )
    recent = [r for r in rows if str(r.get(h.ended_on) or "")[:10] >= themes_from.isoformat()]
    stated = [
        r
        for r in recent
        if has_reason(r.get(reason) if reason else None, r.get(h.leaving_text or ""))
    ]
    if recent and not stated:
        report.add(
            "warning",
            "mappings",
            f"{report.folder / RETENTION_FILE}: history.leaving_reason",
            f"the leaving reason is empty for all {len(recent)} members who left since "
            f"{themes_from}: `retention themes` has nothing to cluster on",
            "record the reason when a member leaves (the choice, or the free text), and check "
            "that history.leaving_reason and leaving_text name the columns that hold it",
        )


def _dataverse_findings(
    report: CheckReport,
    mapping: MappingFile,
    dataverse: Callable[[], DataverseClient],
    source: Path,
    unreachable: Severity = "error",
) -> None:
    from dynamics_bridge.dataverse.provision import check_metadata, related_problems

    try:
        client = dataverse()
        problems = check_metadata(client, mapping, source=str(source))
        related, optional = related_problems(client, mapping, source=str(source))
    except BridgeError as exc:
        report.add(
            unreachable if isinstance(exc, TransientError) else "error",
            "dataverse",
            "Dataverse",
            f"not reachable: {_one_line(str(exc))}",
            "check BRIDGE_DATAVERSE__URL, the app user (tenant, client id, secret) and the "
            "network; the app user needs a security role in the environment",
        )
        return
    for problem in problems:
        # "run provision" is said once, as what to do; other problems say it themselves.
        provision = _RUN_PROVISION in problem
        text = problem.replace(f": {_RUN_PROVISION}", "") if provision else problem
        head, _, rest = text.partition(": ")
        # A place is a table, column or entry ("contact.mbr_x"); a sentence is not one.
        place, what = ("", text) if " " in head or not rest else (f": {head}", rest)
        fix = PROVISION if provision else "as said, then run `dynamics-bridge check` again"
        report.add("error", "dataverse", f"Dataverse{place}", what, fix)
    kinds: tuple[tuple[Severity, list[str]], ...] = (("error", related), ("warning", optional))
    for severity, found in kinds:
        for problem in found:
            where, _, what = problem.partition(": ")
            report.add(
                severity,
                "dataverse",
                f"Dataverse: {where}",
                what or problem,
                "correct dataverse.yaml related (the union's own tables: provision creates none)",
            )


def _apsis_findings(
    report: CheckReport,
    config: ActivationConfig,
    marketing: Callable[[ActivationConfig], MarketingPlatform | None],
    unreachable: Severity = "error",
) -> None:
    from dynamics_bridge.activation.service import check_apsis

    fix = "create it in APSIS One (Data model), or correct apsis.yaml"
    try:
        platform = marketing(config)
        if platform is None:
            return
        report.add_problems(
            (
                f"APSIS {p}" if not p.startswith("APSIS") else p
                for p in check_apsis(platform, config.apsis)
            ),
            "apsis",
            fix,
        )
        _event_fields(report, platform, config)
    except BridgeError as exc:
        report.add(
            unreachable if isinstance(exc, TransientError) else "error",
            "apsis",
            "APSIS",
            f"not reachable: {_one_line(str(exc))}",
            "check BRIDGE_APSIS__CLIENT_ID, __CLIENT_SECRET, __BASE_URL and the network",
        )


def _event_fields(
    report: CheckReport, platform: MarketingPlatform, config: ActivationConfig
) -> None:
    """The fields each event carries against its APSIS event version (:func:`~dynamics_bridge.
    activation.service.event_field_problems`, which ``apsis check`` runs too)."""
    from dynamics_bridge.activation.service import event_field_problems

    for where, what in event_field_problems(platform, config):
        report.add(
            "error",
            "apsis",
            where,
            what,
            "add the field(s) to the event in APSIS One (a new version), or leave them out here",
        )


def _one_line(text: str) -> str:
    return " ".join(text.split())[:400]
