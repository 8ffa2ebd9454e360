"""Typed settings of the training commands: one frozen dataclass per config section.

They are built once, at the command line, from the ``--settings`` that
:func:`cromss.config.load_settings` validated against ``workflow/schemas/config.schema.yaml`` and
completed with its defaults (:func:`build`; :meth:`Section.parse` validates a mapping first). The
schema is the only source of defaults: the dataclasses have none, so a key the schema does not
fill is an error, not a second default. :func:`as_dict` gives back the plain mapping that model
cards and checkpoints keep (the validated settings, key for key), so runs written before resume
and compare as before.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")
S = TypeVar("S", bound="Section")


@dataclasses.dataclass(frozen=True)
class Selection:
    """Cross-modal label selection (method §4): ramp length in epochs and the kept share."""

    enabled: bool
    ramp_epochs: int
    keep: float


@dataclasses.dataclass(frozen=True)
class Smoothing:
    """Label smoothing with a spatial and/or temporal prior (method §5)."""

    enabled: bool
    prior: str
    sigma: float
    alpha: float
    beta: float


class Section:
    """A section :func:`cromss.config.section_schema` cuts from the schema (``SECTION``)."""

    SECTION: ClassVar[str]

    @classmethod
    def parse(cls: type[S], settings: Mapping[str, Any], source: str = "settings") -> S:
        """From a mapping as ``--settings`` gives it: validated and completed by the schema."""
        from cromss.config import validate

        return build(cls, validate(dict(settings), cls.SECTION, source))


@dataclasses.dataclass(frozen=True)
class Pretrain(Section):
    """One pretraining variant: the ``pretrain`` section's shared keys with the variant's."""

    name: str | None
    fusion: str
    encoder: str
    s2_bands: int
    decoder_channels: tuple[int, ...]
    epochs: int
    batch_size: int
    crop: int
    lr: float
    weight_decay: float
    plateau_factor: float
    plateau_patience: int
    val_fraction: float
    val_augment: bool
    val_batch_size: int
    val_drop_last: bool
    amp: bool
    seed: int
    num_workers: int
    checkpoint_every: int
    flip_p: float
    rotate_p: float
    selection: Selection
    smoothing: Smoothing
    consistency_weight: float

    SECTION: ClassVar[str] = "pretrain"

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the variant trains: one for single-modal fusions, both otherwise."""
        fusion = self.fusion
        return (fusion.removeprefix("single_"),) if fusion.startswith("single_") else ("s1", "s2")


@dataclasses.dataclass(frozen=True)
class PerTask:
    """A value per fine-tuning task (a task the settings leave out has none); ``KEY`` names it."""

    KEY: ClassVar[str] = "finetune"
    dfc2020: int | None
    dw: int | None
    osm: int | None

    def of(self, task: str) -> int:
        value = getattr(self, task)
        if value is None:
            raise ValueError(f"settings: no {self.KEY} for task {task!r} ({self.KEY}.{task})")
        return value


@dataclasses.dataclass(frozen=True)
class Crop(PerTask):
    """Random crop side per fine-tuning task."""

    KEY: ClassVar[str] = "finetune.crop"


@dataclasses.dataclass(frozen=True)
class ScoringBatch(PerTask):
    """The reference's test batch per task (``finetune.test.batch_size``)."""

    KEY: ClassVar[str] = "finetune.test.batch_size"


@dataclasses.dataclass(frozen=True)
class Scoring:
    """Which test tiles are scored: ``all``, or ``reference`` (whole batches of the task's
    ``batch_size`` only, as the reference's ``drop_last=True`` test loader)."""

    tiles: str
    batch_size: ScoringBatch

    def scored(self, task: str, tiles: int) -> int:
        """How many of a test store's ``tiles`` (the first, in store order) are scored."""
        if self.tiles == "all":
            return tiles
        return tiles // self.batch_size.of(task) * self.batch_size.of(task)


@dataclasses.dataclass(frozen=True)
class Finetune(Section):
    """One fine-tuning run: the ``finetune`` section without its job matrix; ``encoder`` names
    the architecture of ``--encoder random``."""

    encoder: str | None
    s2_bands: int
    epochs: int
    cosine_epochs: int
    lr: float
    min_lr: float
    weight_decay: float
    batch_size: int
    crop: Crop
    frozen_batchnorm: str
    drop_last: bool
    test: Scoring
    num_workers: int
    checkpoint_every: int
    amp: bool
    amp_dtype: str
    amp_on_cpu: bool

    SECTION: ClassVar[str] = "finetune"


@dataclasses.dataclass(frozen=True)
class Scene(Section):
    """A synthetic scene to map (``maps.scenes.NAME.synthetic``): seed, side in 10 m pixels, season
    (0..3, winter..autumn), land cover drawn at ``1 / land_cover_scale`` of the side, clouds."""

    seed: int
    size: int
    season: int
    land_cover_scale: int
    cloud_fraction: float

    SECTION: ClassVar[str] = "scene"


@dataclasses.dataclass(frozen=True)
class Local:
    """Trees already on disk, read in place (``data.real.local``); a part named is never fetched."""

    ssl4eo_s12: str | None
    noldo: str | None
    dfc2020: str | None


@dataclasses.dataclass(frozen=True)
class Retry:
    """Retries of a download (``data.real.retry``): attempts, first back-off, timeout per try."""

    attempts: int
    backoff_s: float
    timeout_s: float


@dataclasses.dataclass(frozen=True)
class Real(Section):
    """The real data sources (``data.real``), as ``cromss data fetch`` and ``cromss weights
    release`` read them. Each source's block (repository pins, areas, formats) stays the mapping
    the schema describes, completed by it; the fetcher of that source reads it."""

    local: Local
    huggingface_url: str
    download_dir: str
    retry: Retry
    noldo: Mapping[str, Any]
    weights: Mapping[str, Any]
    ssl4eo: Mapping[str, Any]
    dfc2020: Mapping[str, Any]
    stac: Mapping[str, Any]
    dynamicworld: Mapping[str, Any]

    SECTION: ClassVar[str] = "real"

    @classmethod
    def parse(cls, settings: Mapping[str, Any], source: str = "settings") -> Real:
        """From ``data.real`` as given: every block present (an absent one as its defaults)."""
        from cromss.config import section_schema

        properties = section_schema(cls.SECTION)["properties"]
        blocks: dict[str, dict[str, Any]] = {name: {} for name, sub in properties.items()
                                             if sub.get("type") == "object"}
        return super().parse({**blocks, **settings}, source)


def build(cls: type[T], values: Mapping[str, Any]) -> T:
    """``cls`` from validated, completed settings; every field must be given (None where an
    optional key is absent), nested sections are built as their dataclasses, lists as tuples."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(typing.cast(Any, cls))
    unknown = set(values) - {f.name for f in fields}
    if unknown:
        raise ValueError(f"settings: unknown keys {sorted(unknown)} for {cls.__name__}")
    kwargs: dict[str, Any] = {}
    for field in fields:
        kind: Any = _required(hints[field.name])
        if field.name not in values:
            if not _optional(hints[field.name]):
                raise ValueError(f"settings: {field.name} missing ({cls.__name__}); settings are "
                                 "built from schema-completed sections")
            kwargs[field.name] = None
        elif isinstance(kind, type) and dataclasses.is_dataclass(kind):
            kwargs[field.name] = build(kind, values[field.name])
        elif isinstance(values[field.name], list):
            kwargs[field.name] = tuple(values[field.name])
        else:
            kwargs[field.name] = values[field.name]
    return cls(**kwargs)


def as_dict(settings: Any) -> dict[str, Any]:
    """The plain mapping of typed settings as the schema writes it (lists, nested mappings, absent
    optional keys left out): what model cards and checkpoints keep."""
    plain = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if value is None:
            continue
        if dataclasses.is_dataclass(value):
            value = as_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        plain[field.name] = value
    return plain


def _optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)


def _required(hint: Any) -> Any:
    """The type of ``hint`` without ``None``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint
