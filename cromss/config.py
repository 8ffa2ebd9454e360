"""Settings as the CLI receives them: a JSON text or a YAML/JSON file, merged over defaults.

Snakemake validates the whole config against ``workflow/schemas/config.schema.yaml`` and hands each
job the section it depends on as JSON through ``params:``, so a changed value reruns exactly the
jobs that read it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml


def settings_param(value: Any) -> str:
    """A config section as one line of flow-style YAML, e.g. ``{crop: 64, lr: 0.005}``: what
    Snakemake passes as ``params:`` (a change reruns the job) and shows in the report's job
    parameters, readable and without escaped quotes; :func:`load_settings` reads it back."""
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=True,
                          width=float("inf")).strip()


def load_settings(text_or_path: str | None) -> dict[str, Any]:
    """Parse ``--settings``: inline JSON or flow-style YAML (starting with ``{``, as
    :func:`settings_param` writes it) or a path to a YAML/JSON file."""
    if not text_or_path:
        return {}
    if text_or_path.lstrip().startswith("{"):
        try:
            return json.loads(text_or_path)
        except json.JSONDecodeError:
            return yaml.safe_load(text_or_path)
    path = Path(text_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: settings file not found")
    text = path.read_text()
    # YAML 1.1 reads JSON's 1e-08 as a string: parse JSON files as JSON
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: settings must be a mapping, not {type(data).__name__}")
    return data


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
        raise ValueError(f"unknown pretraining variant {variant!r}; known: {sorted(variants)}")
    shared = {k: v for k, v in pretrain.items() if k != "variants"}
    return deep_merge(shared, {**variants[variant], "name": variant})
