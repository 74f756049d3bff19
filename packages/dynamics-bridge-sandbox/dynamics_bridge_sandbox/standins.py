"""The stand-ins an admin practises against, and what they keep between runs.

``dynamics-bridge sandbox dataverse|apsis|spar|all`` runs :func:`run_standins`. A state
directory (``.bridge/sandbox/`` by default) keeps each stand-in's credentials (the Dataverse app
users, the APSIS API client, the SPAR customer and assignment numbers), its last port and the
CA, so a restart changes no setting; and it holds ``.env``, the ``BRIDGE_*`` variables of every
stand-in started there, for ``set -a; . .bridge/sandbox/.env; set +a`` or to copy from.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynamics_bridge.errors import ConfigError
from dynamics_bridge_sandbox.apsis import ApsisStandIn, run_apsis_standin
from dynamics_bridge_sandbox.dataverse import Limits
from dynamics_bridge_sandbox.server import SandboxInfo, run_sandbox
from dynamics_bridge_sandbox.spar import SparResponder, run_spar_responder

__all__ = ["DEFAULT_STATE_DIR", "STANDINS", "Running", "SandboxState", "run_standins"]

DEFAULT_STATE_DIR = Path(".bridge/sandbox")
STANDINS = ("dataverse", "apsis", "spar")
#: The first line of every ``.env`` written here: a file without it is somebody else's.
ENV_MARK = "# Written by `dynamics-bridge sandbox`"


class SandboxState:
    """``state.json`` (owner-only: it holds secrets), ``tls/`` and ``.env`` in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.file = directory / "state.json"
        self.env_file = directory / ".env"
        self.certificates = directory / "tls"

    def load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            problem = f"{self.file}: not JSON ({exc}); delete it to start afresh"
            raise ConfigError(problem) from None
        return data if isinstance(data, dict) else {}

    def get(self, name: str) -> dict[str, Any]:
        record = self.load().get(name)
        return dict(record) if isinstance(record, dict) else {}

    def save(self, name: str, record: dict[str, Any]) -> None:
        """Replace one stand-in's record, read afresh so a second terminal's stand-in stays."""
        data = self.load()
        data[name] = record
        _write_private(self.file, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def port(self, name: str, asked: int) -> int:
        """``asked``, else the last port while it is free (so ``.env`` stays right), else 0."""
        if asked:
            return asked
        last = int(self.get(name).get("port") or 0)
        return last if last and _free(last) else 0

    def write_env(self) -> Path:
        """``.env`` with every stand-in's settings started from this directory; a ``.env`` that
        this command did not write is never replaced."""
        if self.env_file.exists():
            first = self.env_file.read_text(encoding="utf-8").partition("\n")[0]
            if first != ENV_MARK:
                raise ConfigError(
                    [
                        f"{self.env_file}: exists and was not written by the sandbox; "
                        "choose another --state-dir or move the file"
                    ]
                )
        state = self.load()
        lines = [
            ENV_MARK,
            f"# Load it: set -a; . {self.env_file}; set +a   (or copy the lines you need)",
        ]
        for name in STANDINS:
            env = state.get(name, {}).get("env")
            if not env:
                continue
            lines.append(f"# {name}")
            for key, value in env.items():
                if "'" in value or "\n" in value:
                    raise ValueError(f"{key}: a value with a quote or newline cannot go in .env")
                lines.append(f"{key}='{value}'")
        _write_private(self.env_file, "\n".join(lines) + "\n")
        return self.env_file


@dataclass
class Running:
    """What :func:`run_standins` started: the cores (for a test to look into) and their
    settings together."""

    env_file: Path
    dataverse: SandboxInfo | None = None
    apsis: ApsisStandIn | None = None
    spar: SparResponder | None = None
    env: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def run_standins(
    names: Sequence[str],
    state_dir: Path = DEFAULT_STATE_DIR,
    *,
    db: Path | None = None,
    ports: dict[str, int] | None = None,
    limits: Limits | None = None,
    app_users: int = 1,
) -> Iterator[Running]:
    """The named stand-ins on 127.0.0.1 until the block ends, with the credentials, ports and CA
    kept in ``state_dir`` (made on the first run) and ``state_dir/.env`` rewritten."""
    unknown = [n for n in names if n not in STANDINS]
    if unknown:
        raise ValueError(f"no stand-in named {', '.join(unknown)}; one of {', '.join(STANDINS)}")
    state = SandboxState(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    state.write_env()  # refuses early, before any port is taken, when .env is not ours
    asked = ports or {}
    running = Running(state.env_file)
    with contextlib.ExitStack() as stack:
        if "dataverse" in names:
            record = state.get("dataverse")
            users = dict(record.get("users") or {})
            while len(users) < app_users:
                users[str(uuid.uuid4())] = secrets.token_urlsafe(32)
            box = stack.enter_context(
                run_sandbox(
                    db or state_dir / "dataverse.sqlite",
                    limits=limits,
                    port=state.port("dataverse", asked.get("dataverse", 0)),
                    app_users=app_users,
                    users=dict(list(users.items())[:app_users]),
                    # absolute: the .env is read from other directories too
                    certificates=state.certificates.resolve(),
                )
            )
            port = int(box.url.rsplit(":", 1)[1])
            state.save("dataverse", {"users": users, "port": port, "env": box.env})
            running.dataverse, running.urls["dataverse"] = box, box.url
            running.env.update(box.env)
        if "apsis" in names:
            record = state.get("apsis")
            apsis = stack.enter_context(
                run_apsis_standin(
                    state.port("apsis", asked.get("apsis", 0)),
                    client_id=record.get("client_id"),
                    client_secret=record.get("client_secret"),
                )
            )
            port = int(apsis.url.rsplit(":", 1)[1])
            state.save(
                "apsis",
                {
                    "client_id": apsis.client_id,
                    "client_secret": apsis.client_secret,
                    "port": port,
                    "env": apsis.env,
                },
            )
            running.apsis, running.urls["apsis"] = apsis, apsis.url
            running.env.update(apsis.env)
        if "spar" in names:
            record = state.get("spar")
            numbers = {
                "customer_number": int(record.get("customer_number") or 500243),
                "assignment_id": int(record.get("assignment_id") or 637),
            }
            spar = stack.enter_context(
                run_spar_responder(state.port("spar", asked.get("spar", 0)), **numbers)
            )
            port = int(spar.url.split(":")[2].split("/")[0])
            state.save("spar", {**numbers, "port": port, "env": spar.env})
            running.spar, running.urls["spar"] = spar, spar.url
            running.env.update(spar.env)
        state.write_env()
        yield running


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _write_private(path: Path, text: str) -> None:
    """Owner-only, replaced in one step: a reader never sees half a file or a wider mode."""
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    part.replace(path)
