"""Read ``mappings/apsis.yaml``, ``triggers.yaml`` and ``segments.yaml`` and check them together.

Each file is read like the Dataverse mapping (``{prefix}`` from its publisher prefix, errors by
file:line:column); then every column, event type and tag one file names must exist in the
others, or one ConfigError lists each problem.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from dynamics_bridge.activation.config import (
    ActivationConfig,
    ApsisFile,
    SegmentsFile,
    TriggersFile,
    cross_check,
)
from dynamics_bridge.errors import ConfigError
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.mapping.loader import MAPPINGS_DIR, load_config

__all__ = ["ACTIVATION_FILES", "activation_configured", "load_activation"]

ACTIVATION_FILES: dict[str, type[BaseModel]] = {
    "apsis": ApsisFile,
    "triggers": TriggersFile,
    "segments": SegmentsFile,
}


def activation_configured(directory: Path | str | None = None) -> bool:
    """Whether the three files are there (a deployment without activation leaves them out)."""
    folder = Path(directory) if directory is not None else MAPPINGS_DIR
    return all((folder / f"{stem}.yaml").is_file() for stem in ACTIVATION_FILES)


def load_activation(mapping: MappingFile, directory: Path | str | None = None) -> ActivationConfig:
    """The three files under ``directory`` (default: the repository's ``mappings/``)."""
    folder = Path(directory) if directory is not None else MAPPINGS_DIR
    prefix = mapping.publisher_prefix
    problems: list[str] = []
    loaded: dict[str, BaseModel] = {}
    for stem, model in ACTIVATION_FILES.items():
        try:
            loaded[stem] = load_config(model, folder / f"{stem}.yaml", prefix=prefix)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    config = ActivationConfig.model_validate(loaded)
    if problems := cross_check(config, mapping):
        raise ConfigError(problems)
    return config
