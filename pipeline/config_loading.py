"""Reading a config: YAML files, flag overrides on top, a label.choices file read through
the job's storage, then validation into the schema (`pipeline.job_config`, or a training
config), with an error that names every bad field."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.exceptions import ConfigError
from pipeline.job_config import JobConfig, StorageSettings
from pipeline.storage import open_filesystem

SECRET_FIELDS = {"secret_access_key", "session_token"}
ConfigT = TypeVar("ConfigT", bound=BaseModel)


def _close_field(schema: type[BaseModel], loc: tuple) -> str | None:
    """The field an unknown key was probably meant to be, as a dotted name."""
    model: Any = schema
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if isinstance(model, type) else None
        model = field.annotation if field is not None else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    match = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return ".".join([*map(str, loc[:-1]), match[0]]) if match else None


def _describe(error: dict[str, Any], schema: type[BaseModel]) -> str:
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden" and (meant := _close_field(schema, error["loc"])):
        message += f"; did you mean {meant}?"
    text = f"{where}: {message}" if where else message
    # A check across fields (empty loc) has the whole config, secrets included, as input.
    if where and error["type"] != "missing" and not SECRET_FIELDS & set(map(str, error["loc"])):
        text += f" (got {error['input']!r})"
    return text


def validate_config(data: dict[str, Any], schema: type[ConfigT] = JobConfig) -> ConfigT:
    """The config (JobConfig unless told) from a nested dict, a job's label.choices file
    read; a ConfigError names every bad field."""
    if schema is JobConfig:
        data = read_choices_file(data)
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(_describe(e, schema) for e in error.errors())
        kind = "job" if schema is JobConfig else "training"
        raise ConfigError(f"invalid {kind} config: {problems}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The nested dict of a YAML job config."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {data!r}")
    return data


def merge_sections(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Two nested config dicts, `override` winning field by field within each section."""
    merged = {section: dict(values) if isinstance(values, dict) else values
              for section, values in base.items()}  # fmt: skip
    for section, values in override.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


def merge_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Apply {"section.field": value} overrides (from flags) on top of a config dict."""
    merged = {
        section: dict(values) if isinstance(values, dict) else values
        for section, values in data.items()
    }
    for dotted, value in overrides.items():
        section, field = dotted.split(".")
        target = merged.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{section}: must be a mapping of fields, not {target!r}")
        target[field] = value
    return merged


def read_choices_file(data: dict[str, Any]) -> dict[str, Any]:
    """A job config dict whose label.choices names a file (path or URL) with that file's
    lines as the choices, read with the job's storage settings (the model layer never
    reaches storage); other dicts as they are."""
    label = data.get("label") if isinstance(data, dict) else None
    if not (isinstance(label, dict) and isinstance(label.get("choices"), str)):
        return data
    try:
        storage = StorageSettings.model_validate(data.get("storage") or {})
    except ValidationError:
        return data  # validation names the storage fields
    path = label["choices"]
    try:
        fs, file = open_filesystem(path, storage)
        lines = fs.cat_file(file).decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"invalid job config: label.choices: cannot read the choices file {path!r}: {error}"
        ) from None
    labels = [line.strip() for line in lines if line.strip()]
    return {**data, "label": {**label, "choices": labels}}
