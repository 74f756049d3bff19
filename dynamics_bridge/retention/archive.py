"""How a model is stored: a numpy archive of plain arrays with a JSON header, no pickle (a
stored model is data, never code), checked for its format and version when read."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np
import numpy.typing as npt

from dynamics_bridge.errors import InputError

__all__ = ["pack", "unpack"]


def pack(fmt: str, version: int, meta: dict[str, Any], **arrays: npt.ArrayLike) -> bytes:
    header = {"format": fmt, "version": version, **meta}
    payload: dict[str, Any] = {
        "meta": np.frombuffer(json.dumps(header).encode("utf-8"), np.uint8),
        **arrays,
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **payload)
    return buffer.getvalue()


def unpack(
    raw: bytes, fmt: str, version: int, *, what: str, again: str
) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """(header, arrays) of an archive :func:`pack` wrote as ``fmt`` ``version``; anything else
    is an :class:`InputError` naming ``what`` it is not and saying to do ``again``."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            arrays = {name: np.asarray(archive[name]) for name in archive.files}
        meta: dict[str, Any] = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as error:
        raise InputError(f"not a stored {what}: {error}") from None
    if meta.get("format") != fmt:
        raise InputError(f"not a stored {what} (format {meta.get('format')!r})")
    if meta.get("version") != version:
        raise InputError(
            f"a {what} of format version {meta.get('version')!r}; this version reads "
            f"{version}: {again}"
        )
    return meta, arrays
