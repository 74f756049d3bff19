"""JSON Schema for each mapping file, so editors check a file while an admin types."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from dynamics_bridge.activation.config import ApsisFile, SegmentsFile, TriggersFile
from dynamics_bridge.mapping.models import MappingFile
from dynamics_bridge.mapping.retention import RetentionFile

__all__ = ["MAPPING_MODELS", "json_schema", "write_schemas"]

#: File stem under mappings/ → the model that reads it. Later config files add themselves here.
MAPPING_MODELS: dict[str, type[BaseModel]] = {
    "dataverse": MappingFile,
    "apsis": ApsisFile,
    "triggers": TriggersFile,
    "segments": SegmentsFile,
    "retention": RetentionFile,
}


def json_schema(model: type[BaseModel], stem: str) -> dict:
    schema = model.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"dynamics_bridge mappings/{stem}.yaml"
    return schema


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, model in MAPPING_MODELS.items():
        path = directory / f"{stem}.schema.json"
        path.write_text(
            json.dumps(json_schema(model, stem), indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        written.append(path)
    return written
