"""Configuration documents: YAML files validated once into typed models."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from vigie_core.errors import DocumentError

ModelT = TypeVar("ModelT", bound=BaseModel)


def describe_validation_error(exc: ValidationError) -> str:
    """``field.path: reason`` for each problem, one per line."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(document)"
        lines.append(f"{where}: {error['msg']}")
    return "\n".join(lines)


def load_yaml_document(path: Path, model: type[ModelT]) -> ModelT:
    """Read a YAML file and validate it into ``model``, or raise DocumentError."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read: {exc.strerror or exc}", source=source) from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DocumentError(f"{path}: not valid YAML: {exc}", source=source) from exc
    if not isinstance(document, dict):
        raise DocumentError(f"{path}: expected a mapping at the top level", source=source)
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        problems = describe_validation_error(exc).replace("\n", f"\n{path}: ")
        raise DocumentError(f"{path}: {problems}", source=source) from exc
