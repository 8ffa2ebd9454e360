"""Settings as the CLI receives them: a JSON text or a YAML/JSON file, merged over defaults.

Snakemake validates the whole config against ``workflow/schemas/config.schema.yaml`` and hands each
job the section it depends on as JSON through ``params:``, so a changed value reruns exactly the
jobs that read it. The CLI validates ``--settings`` against the same schema (:func:`validate`), so
a misspelt key, a string where a number belongs or a negative epoch count is refused with its source
named, and fills in the schema's defaults as Snakemake does.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from cromss.errors import CromssError

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
FINETUNE_MATRIX = ("tasks", "modalities", "weights", "settings", "seeds", "ablation",
                   "keep_models")
"""Keys of the config's ``finetune`` section that choose the jobs (and what the workflow keeps of
them) rather than configure one."""


def settings_param(value: Any) -> str:
    """A config section as one line of flow-style YAML, e.g. ``{crop: 64, lr: 0.005}``: what
    Snakemake passes as ``params:`` (a change reruns the job) and shows in the report's job
    parameters, readable and without escaped quotes; :func:`load_settings` reads it back."""
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=True,
                          width=float("inf")).strip()


def load_settings(text_or_path: str | None, section: str | None = None) -> dict[str, Any]:
    """Parse ``--settings``: inline JSON or flow-style YAML (starting with ``{``, as
    :func:`settings_param` writes it) or a path to a YAML/JSON file.

    With ``section`` (see :func:`section_schema`) the settings are validated and completed.
    """
    source = settings_source(text_or_path)
    if not text_or_path:
        data: Any = {}
    elif text_or_path.lstrip().startswith("{"):
        try:
            data = json.loads(text_or_path)
        except json.JSONDecodeError as err:
            try:
                data = yaml.safe_load(text_or_path)
            except yaml.YAMLError:
                raise CromssError(f"{source}: not valid JSON ({err}) nor flow-style YAML") from err
    else:
        path = Path(text_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: settings file not found")
        # YAML 1.1 reads JSON's 1e-08 as a string: parse JSON files as JSON
        data = _parse(json.loads if path.suffix == ".json" else yaml.safe_load, path.read_text(),
                      source)
    if not isinstance(data, dict):
        raise CromssError(f"{source}: settings must be a mapping, not {type(data).__name__}")
    return validate(data, section, source) if section else data


def settings_source(text_or_path: str | None) -> str:
    """How error messages name a ``--settings`` value: the file, or inline JSON."""
    if not text_or_path:
        return "--settings (empty)"
    return "--settings (inline JSON)" if text_or_path.lstrip().startswith("{") else text_or_path


def _parse(parser: Callable[[str], Any], text: str, source: str) -> Any:
    try:
        return parser(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise CromssError(f"{source}: not valid {'JSON' if parser is json.loads else 'YAML'}: "
                          f"{err}") from err


def section_schema(section: str) -> dict[str, Any]:
    """The JSON schema of what one CLI command reads, cut from the workflow's config schema:
    ``pretrain`` (one variant: the shared keys, the variant's and its ``name``), ``finetune`` (one
    run: the section without the job matrix, plus the random-init ``encoder``), ``synthetic`` and
    ``real`` (``data.synthetic``, ``data.real``), ``scene`` (a synthetic scene of ``maps.scenes``)."""
    root = yaml.safe_load(SCHEMA.read_text())
    props = root["properties"]
    if section == "pretrain":
        base, variant = props["pretrain"], root["definitions"]["variant"]
        shared = {k: v for k, v in base["properties"].items() if k != "variants"}
        schema = {**base, "properties": {**variant["properties"], **shared,
                                         "name": {"type": "string"}},
                  "required": [k for k in base["required"] if k != "variants"]
                  + variant["required"]}
    elif section == "finetune":
        base = props["finetune"]
        schema = {**base, "properties": {**{k: v for k, v in base["properties"].items()
                                            if k not in FINETUNE_MATRIX},
                                         "encoder": {"type": "string"}},
                  "required": [k for k in base["required"] if k not in FINETUNE_MATRIX]}
    elif section in ("synthetic", "real"):
        schema = props["data"]["properties"][section]
    elif section == "scene":
        schema = props["maps"]["properties"]["scenes"]["additionalProperties"]["properties"][
            "synthetic"]
    else:
        raise ValueError(f"unknown settings section {section!r}")
    return {"$schema": root["$schema"], "definitions": root["definitions"], **schema}


def validate(settings: dict[str, Any], section: str, source: str) -> dict[str, Any]:
    """``settings`` checked against :func:`section_schema` and completed with its defaults.

    Every violation is listed in one ValueError that names ``source`` and the key.
    """
    import jsonschema

    schema = section_schema(section)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(settings), key=lambda e: list(map(str, e.path)))
    if errors:
        lines = [f"{'.'.join(map(str, e.path)) or '(top level)'}: {e.message}" for e in errors]
        raise CromssError(f"{source}: invalid {section} settings:\n  " + "\n  ".join(lines))
    return _with_defaults(settings, schema, schema)


def with_defaults(settings: dict[str, Any], section: str) -> dict[str, Any]:
    """``settings`` completed with the defaults of :func:`section_schema` (not validated: for
    library calls that go below the schema's limits, such as tests' tiny worlds)."""
    schema = section_schema(section)
    return _with_defaults(settings, schema, schema)


def _with_defaults(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """Fill the ``default`` of every absent property, recursing into given mappings."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    if not isinstance(value, dict) or "properties" not in schema:
        return value
    filled = copy.deepcopy(value)
    for key, sub in schema["properties"].items():
        if key in filled:
            filled[key] = _with_defaults(filled[key], sub, root)
        elif "default" in sub:  # completed in turn, as Snakemake's validate does
            filled[key] = _with_defaults(copy.deepcopy(sub["default"]), sub, root)
    return filled


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in, recursing into nested mappings."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def variant_settings(pretrain: dict[str, Any], variant: str) -> dict[str, Any]:
    """The settings of one pretraining variant: the shared keys with the variant's overrides."""
    variants = pretrain.get("variants", {})
    if variant not in variants:
        raise CromssError(f"unknown pretraining variant {variant!r}; known: {sorted(variants)}")
    shared = {k: v for k, v in pretrain.items() if k != "variants"}
    return deep_merge(shared, {**variants[variant], "name": variant})
