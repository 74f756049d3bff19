"""Read a mapping file: YAML → models, with every error named by file, line and column.

``{prefix}`` in keys and values is replaced by the file's ``publisher_prefix`` (or an override),
so the shipped defaults work for any publisher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.mapping.models import MappingFile, MappingProblems

__all__ = [
    "DEFAULT_MAPPING",
    "MAPPINGS_DIR",
    "load_config",
    "load_mapping",
    "parse_config",
    "parse_mapping",
    "read_text",
]

MAPPINGS_DIR = Path(__file__).resolve().parent.parent.parent / "mappings"
DEFAULT_MAPPING = MAPPINGS_DIR / "dataverse.yaml"

M = TypeVar("M", bound=BaseModel)


def load_mapping(path: Path | str | None = None, *, prefix: str | None = None) -> MappingFile:
    """The mapping at ``path`` (default: the repository's ``mappings/dataverse.yaml``)."""
    path = Path(path) if path is not None else DEFAULT_MAPPING
    return parse_mapping(read_text(path, "mapping file"), name=str(path), prefix=prefix)


def parse_mapping(text: str, *, name: str = "<mapping>", prefix: str | None = None) -> MappingFile:
    root, data = _compose(text, name)
    chosen = prefix or data.get("publisher_prefix")
    if isinstance(chosen, str):
        data = _substitute(data, chosen)
        data["publisher_prefix"] = chosen
    return _validate(MappingFile, data, root, name)


def load_config(model: type[M], path: Path | str, *, prefix: str | None = None) -> M:
    """Another file under ``mappings/`` (APSIS, triggers, segments), read like the mapping:
    ``{prefix}`` becomes ``prefix`` (the mapping's publisher prefix); errors name file:line:col."""
    path = Path(path)
    return parse_config(model, read_text(path, "config file"), name=str(path), prefix=prefix)


def read_text(path: Path, what: str = "file") -> str:
    """A mapping file's text, which must be UTF-8: a file saved as Latin-1 (Notepad's "ANSI",
    with å/ä/ö) is refused naming the file, the line and the byte, not a bare decode error."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path}:{line}:{column}: not UTF-8 (byte 0x{data[exc.start]:02x}): save the file "
            "as UTF-8 (Notepad: Save as, Encoding UTF-8; a Latin-1/ANSI file spells å, ä, ö "
            "as single bytes)"
        ) from None


def parse_config(model: type[M], text: str, *, name: str, prefix: str | None = None) -> M:
    root, data = _compose(text, name)
    if prefix:
        data = _substitute(data, prefix)
    config = _validate(model, data, root, name)
    if prefix and _has_placeholder(dumped := config.model_dump(by_alias=True)):
        # a default that names a column ("{prefix}_retentionkey") gets the prefix too
        config = model.model_validate(_substitute(dumped, prefix))
    return config


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return "{prefix}" in value
    if isinstance(value, dict):
        return any(_has_placeholder(k) or _has_placeholder(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_placeholder(v) for v in value)
    return False


def _compose(text: str, name: str) -> tuple[yaml.Node | None, dict[str, Any]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise ConfigError(f"{where}: {exc.problem or exc.context}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name}:1:1: a mapping file is a YAML object")
    return root, data


def _validate(model: type[M], data: dict[str, Any], root: yaml.Node | None, name: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [p for p in err["loc"] if not (isinstance(p, str) and "[" in p)]
            found = (err.get("ctx") or {}).get("error")
            if isinstance(found, MappingProblems):  # one error per problem, at its own place
                for where, message in found.problems:
                    path = [*loc, *where]
                    problems.append(f"{_locate(root, path, name)}: {_dotted(path)}: {message}")
                continue
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{_locate(root, loc, name)}: {_dotted(loc)}: {message}")
        raise ConfigError(problems) from None


def _dotted(loc: list[Any]) -> str:
    return ".".join(map(str, loc)) or "(root)"


def _substitute(value: Any, prefix: str) -> Any:
    if isinstance(value, str):
        return value.replace("{prefix}", prefix)
    if isinstance(value, dict):
        return {_substitute(k, prefix): _substitute(v, prefix) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, prefix) for v in value]
    return value


def _locate(root: yaml.Node | None, loc: list[Any], name: str) -> str:
    """``file:line:col`` of the deepest YAML node on the error's path."""
    node = root
    found = node
    for part in loc:
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = found = node.value[part]
            continue
        if not isinstance(node, yaml.MappingNode):
            break
        nxt = None
        for key, value in node.value:
            key_text = str(key.value).replace("{prefix}", "")
            if str(key.value) == str(part) or (key_text and str(part).endswith(key_text)):
                nxt = value
                found = key
                break
        if nxt is None:
            continue  # a part the YAML does not spell (a union's tag): look further down
        node = found = nxt
    if found is None:
        return name
    return f"{name}:{found.start_mark.line + 1}:{found.start_mark.column + 1}"
