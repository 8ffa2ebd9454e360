"""Where our rows come from: data, backbone, epochs and seeds of a run, read from its settings.

The table commands get the run's settings (``data``, ``pretrain`` and ``finetune`` sections, or
the parts of them this module reads) and write the resulting sentences into every table's CSV
(column ``ours_from``), Markdown and HTML, so that no number leaves the workflow without saying
what it can be compared with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PAPER_RUN = {"backbone": "ResNet50", "pretrain_epochs": 200, "finetune_epochs": 50}
"""The published setting (Liu et al. 2025): ResNet-50 encoders, 200 pretraining epochs on
SSL4EO-S12@NoL, 50 fine-tuning epochs."""
TASK_NAMES = {"dfc2020": "DFC2020", "dw": "DW", "osm": "OSM"}
TEST_TILES = {
    "all": "Scored on every test tile.",
    "reference": ("Scored as the published numbers: whole test batches only (the reference's "
                  "drop_last=True), e.g. 5,100 of 5,128 DFC2020 and 300 of 340 DW tiles; each "
                  "metrics file's test_tiles gives the count."),
}
TEST_TILES_SHORT = {"all": "all test tiles", "reference": "reference test batches"}
"""``finetune.test.tiles`` in a sentence (``TEST_TILES``) and in the ``ours_from`` cell."""


@dataclass(frozen=True)
class Provenance:
    """What a run was: its data, encoder, schedule and seeds."""

    source: str
    data: str
    backbone: str
    pretrain_epochs: int | None
    finetune_epochs: int | None
    seeds: tuple[int, ...]
    test_tiles: str | None = None
    """``all`` or ``reference`` (``finetune.test.tiles``); None where the settings do not say."""

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Provenance:
        """From the run's config: its ``data``, ``pretrain`` and ``finetune`` sections, or the
        parts of them :func:`provenance_settings` keeps (a key it keeps is required)."""
        data, pretrain, finetune = settings["data"], settings["pretrain"], settings["finetune"]
        source = data["source"]
        from cromss.report.tables import backbone_name  # pandas: not when Snakemake parses

        return cls(source=source, data=describe_data(source, data),
                   backbone=backbone_name(str(pretrain["encoder"])),
                   pretrain_epochs=pretrain["epochs"], finetune_epochs=finetune["epochs"],
                   seeds=tuple(finetune["seeds"]),
                   test_tiles=finetune["test"]["tiles"] if "test" in finetune else None)

    def short(self) -> str:
        """One cell: ``synthetic world, ResNet18, 10 + 10 epochs, seeds 0 1``."""
        return (f"{'synthetic world' if self.source == 'synthetic' else self.source + ' data'}, "
                f"{self.backbone}, {self.pretrain_epochs} + {self.finetune_epochs} epochs, "
                f"seeds {' '.join(map(str, self.seeds))}"
                + (f", {TEST_TILES_SHORT[self.test_tiles]}" if self.test_tiles else ""))

    def sentence(self) -> str:
        """What ran, in a sentence."""
        return (f"Our rows: {self.data}; {self.backbone} encoders pretrained for "
                f"{plural(self.pretrain_epochs, 'epoch')} and transferred for "
                f"{plural(self.finetune_epochs, 'epoch')}; mean ± sample std over "
                f"{plural(len(self.seeds), 'seed')} ({', '.join(map(str, self.seeds))})."
                + (f" {TEST_TILES[self.test_tiles]}" if self.test_tiles else ""))

    def differences(self) -> list[str]:
        """How the run differs from the published setting."""
        ours = {"backbone": self.backbone, "pretrain_epochs": self.pretrain_epochs,
                "finetune_epochs": self.finetune_epochs}
        words = {"backbone": "backbone", "pretrain_epochs": "pretraining epochs",
                 "finetune_epochs": "transfer epochs"}
        found = [] if self.source == "real" else ["synthetic instead of real data"]
        return found + [f"{words[key]} {ours[key]} instead of {paper}"
                        for key, paper in PAPER_RUN.items() if ours[key] != paper]

    def comparability(self) -> str:
        """One line: what our numbers can and cannot be compared with."""
        differences = self.differences()
        if not differences:
            return ("Our rows follow the published setting (real data, ResNet50, 200 + 50 "
                    "epochs): they can be compared with the published values, within the "
                    "spread over seeds.")
        return ("Our rows compare with one another (same data, backbone and schedule), not with "
                f"the published values ({'; '.join(differences)}): those are shown for "
                "reference only, and a gap between the two does not mean a failed "
                "reproduction.")


def plural(count: int | None, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def describe_data(source: str, data: Mapping[str, Any]) -> str:
    """The data and its sizes: the synthetic world's tile counts, or the real sources."""
    if source == "synthetic":
        world = data.get("synthetic", {})
        tiles = world.get("tiles", {})
        splits = ", ".join(f"{TASK_NAMES.get(task, task)} {tiles.get(f'{task}_train', '?')}/"
                           f"{tiles.get(f'{task}_test', '?')}" for task in TASK_NAMES
                           if f"{task}_train" in tiles)
        return (f"a synthetic world (seed {world.get('seed', '?')}: "
                f"{world.get('pretrain_locations', '?')} pretraining locations of "
                f"{world.get('pretrain_size', '?')} px; train/test tiles {splits})")
    if source == "real":
        limit = data.get("real", {}).get("ssl4eo", {}).get("max_locations")
        locations = f"the first {limit} locations" if limit else "all locations"
        return (f"real data (SSL4EO-S12@NoL, {locations}, for pretraining; DFC2020, "
                "SSL4EO-S12@DW and @OSM for transfer)")
    return f"data source {source or 'not stated'}"


def provenance_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a whole config :class:`Provenance` reads (the table rules' ``params``:
    a change there, and only there, rewrites the tables)."""
    from cromss.config import with_defaults

    data = config["data"]
    kept: dict[str, Any] = {"source": data["source"]}
    if data["source"] == "synthetic":
        kept["synthetic"] = {key: data["synthetic"][key]
                             for key in ("seed", "pretrain_locations", "pretrain_size", "tiles")}
    else:
        limit = data.get("real", {}).get("ssl4eo", {}).get("max_locations")
        kept["real"] = {"ssl4eo": {"max_locations": limit}}
    return {"data": kept,
            "pretrain": {key: config["pretrain"][key] for key in ("encoder", "epochs")},
            "finetune": {**{key: config["finetune"][key] for key in ("epochs", "seeds")},
                         "test": with_defaults(dict(config["finetune"]), "finetune")["test"]}}
