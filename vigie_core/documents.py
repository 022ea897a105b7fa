"""Configuration documents: YAML files validated once into typed models."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from vigie_core.errors import DocumentError
from vigie_core.paths import check_readable_file

ModelT = TypeVar("ModelT", bound=BaseModel)

#: How pydantic introduces the message of a ValueError raised by a validator.
_PREFIXES = ("Value error, ", "Assertion failed, ")


def describe_validation_error(exc: ValidationError) -> str:
    """``field.path: reason`` for each problem, one per line."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(document)"
        reason = str(error["msg"])
        for prefix in _PREFIXES:
            reason = reason.removeprefix(prefix)
        lines.append(f"{where}: {' '.join(reason.split())}")
    return "\n".join(lines)


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    """One line: where, and what the parser expected (never the offending text)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem or exc.context}"
    return " ".join(str(exc).split())


def load_yaml_document(path: Path, model: type[ModelT]) -> ModelT:
    """Read a YAML file and validate it into ``model``, or raise DocumentError: one
    ``<file>: <field.path>: <reason>`` line per problem, or ``<file>: <reason>`` when
    the file itself is the problem."""
    source = str(path)
    try:
        check_readable_file(path)  # "no such file" and the like, not bare errno text
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DocumentError(f"{path}: not UTF-8 text", source=source) from None
    except ValueError as exc:
        raise DocumentError(str(exc), source=source) from None
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read ({exc.strerror or exc})", source=source) from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DocumentError(
            f"{path}: not valid YAML: {_describe_yaml_error(exc)}", source=source
        ) from exc
    if document is None:
        raise DocumentError(f"{path}: is empty", source=source)
    if not isinstance(document, dict):
        raise DocumentError(f"{path}: expected a mapping at the top level", source=source)
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        problems = describe_validation_error(exc).replace("\n", f"\n{path}: ")
        raise DocumentError(f"{path}: {problems}", source=source) from exc
