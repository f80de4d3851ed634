"""YAML configuration text → pydantic models, with errors that name the line and the field.

Pure (the caller reads the file); shared by the gateway's and central's configuration so both
point a technician at the same kind of line number."""

from __future__ import annotations

from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file that cannot be used; str() is meant for the technician."""


def line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Walk the YAML node tree (``yaml.compose``) along a field's location (as pydantic gives
    it); return the 1-based line of the deepest part found."""
    best = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if match is None:
                key_node = next(
                    (k for k, _ in node.value if getattr(k, "value", None) == key), None
                )
                return key_node.start_mark.line + 1 if key_node is not None else best
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        best = node.start_mark.line + 1
    return best


def parse_yaml_model(
    model: type[M], text: str, source: str = "<config>", overrides: dict[str, Any] | None = None
) -> M:
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the top level must be a mapping of settings")
    data.update(overrides or {})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = line_of(node, loc)
            field = ".".join(str(p) for p in loc) or "(top level)"
            where = f"{source}:{line}" if line else source
            lines.append(f"{where}: {field}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None
