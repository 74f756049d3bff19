"""Start Azurite (the Azure Storage emulator, installed by npm into ./node_modules) on free ports.

The queue service always; the table service beside it when asked (``tables=True``).

Used by the integration tests and the benchmarks; listens on 127.0.0.1 only, keeps its data in
memory and is stopped when the context exits.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["AZURITE_ACCOUNT_KEY", "azurite_binary", "connection_string", "run_azurite"]

#: The emulator's public, documented development key (not a secret).
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def azurite_binary(root: Path, service: str = "azurite-queue") -> Path | None:
    local = root / "node_modules" / ".bin" / service
    if local.exists():
        return local
    found = shutil.which(service)
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connection_string(
    queue_port: int, blob_port: int | None = None, table_port: int | None = None
) -> str:
    parts = [
        "DefaultEndpointsProtocol=http",
        "AccountName=devstoreaccount1",
        f"AccountKey={AZURITE_ACCOUNT_KEY}",
        f"QueueEndpoint=http://127.0.0.1:{queue_port}/devstoreaccount1",
    ]
    if blob_port is not None:
        parts.append(f"BlobEndpoint=http://127.0.0.1:{blob_port}/devstoreaccount1")
    if table_port is not None:
        parts.append(f"TableEndpoint=http://127.0.0.1:{table_port}/devstoreaccount1")
    return ";".join(parts) + ";"


@contextlib.contextmanager
def run_azurite(binary: Path, *, tables: bool = False, timeout: float = 30.0) -> Iterator[str]:
    """Run the queue service on a free port (and with ``tables`` the table service beside it, from
    the ``azurite-table`` next to ``binary``); yields the connection string naming both."""
    with contextlib.ExitStack() as stack:
        queue_port = stack.enter_context(_serve(binary, "queue", timeout))
        table_port = None
        if tables:
            sibling = binary.with_name("azurite-table")
            found = shutil.which("azurite-table")
            table_binary = sibling if sibling.exists() else Path(found) if found else None
            if table_binary is None:
                raise RuntimeError(f"azurite-table is not installed beside {binary}")
            table_port = stack.enter_context(_serve(table_binary, "table", timeout))
        yield connection_string(queue_port, table_port=table_port)


@contextlib.contextmanager
def _serve(binary: Path, service: str, timeout: float) -> Iterator[int]:
    """One Azurite service (``queue`` or ``table``) on a free port, in memory; yields the port."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="azurite-")
    process = subprocess.Popen(
        [
            str(binary),
            f"--{service}Host",
            "127.0.0.1",
            f"--{service}Port",
            str(port),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=workdir,  # Azurite writes its debug and lock files to the working directory
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"azurite exited with {process.returncode}: {err[-500:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"azurite did not open 127.0.0.1:{port} in {timeout}s")
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
