"""Command-line flags generated from a config model (`JobConfig`, `TrainConfig`), so
every config field has a flag."""

from __future__ import annotations

import argparse
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from pipeline.job_config import JobConfig

# Fields whose flag is the section's name (--input URI, --output URI, --model NAME).
_SECTION_FLAGS = {("input", "uri"), ("output", "uri"), ("model", "name")}


def _leaf_fields(schema: type[BaseModel]) -> list[tuple[str, str, Any]]:
    leaves = []
    for section, section_field in schema.model_fields.items():
        model: type[BaseModel] = section_field.annotation  # type: ignore[assignment]
        for name, field in model.model_fields.items():
            leaves.append((section, name, field))
    return leaves


def flag_table(schema: type[BaseModel] = JobConfig) -> dict[str, str]:
    """{argparse dest: 'section.field'} for every field of the config."""
    table: dict[str, str] = {}
    for section, name, _ in _leaf_fields(schema):
        dest = section if (section, name) in _SECTION_FLAGS else name
        if dest in table:
            raise AssertionError(f"two config fields want the flag --{dest}")
        table[dest] = f"{section}.{name}"
    return table


def add_config_flags(parser: argparse.ArgumentParser, schema: type[BaseModel] = JobConfig):
    """One flag per config field; values are validated by pydantic, which names the field."""
    flag_table(schema)  # refuses two fields wanting one flag
    groups: dict[str, argparse._ArgumentGroup] = {}
    for section, name, field in _leaf_fields(schema):
        group = groups.setdefault(section, parser.add_argument_group(f"{section} settings"))
        dest = section if (section, name) in _SECTION_FLAGS else name
        flag = "--" + dest.replace("_", "-")
        help_text = f"{field.description} [{section}.{name}; {_default_text(field)}]"
        if field.annotation in (bool, bool | None):
            group.add_argument(
                flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            metavar = _metavar(name, field.annotation)
            group.add_argument(flag, dest=dest, default=None, metavar=metavar, help=help_text)


def _default_text(field: Any) -> str:
    if field.is_required():
        return "required, here or in --config"
    default = field.get_default(call_default_factory=True)
    return f"default: {default}" if default is not None else "default: unset"


def _metavar(name: str, annotation: Any) -> str:
    """What a value looks like: a URI, a number, one of a few words."""
    choices = [a for a in get_args(annotation) if isinstance(a, str)]
    if get_origin(annotation) is Literal:
        return "{" + ",".join(map(str, get_args(annotation))) + "}"
    if name == "uri" or name.endswith("_url"):
        return "URI"
    kinds = {get_origin(a) or a for a in (get_args(annotation) or (annotation,))}
    if kinds & {int, float} and not choices:
        return "N" if int in kinds else "X"
    return "NAME"


def overrides_from(args: argparse.Namespace, schema: type[BaseModel] = JobConfig) -> dict[str, Any]:
    """{'section.field': value} for the flags given on the command line."""
    return {
        dotted: getattr(args, dest)
        for dest, dotted in flag_table(schema).items()
        if getattr(args, dest, None) is not None
    }
