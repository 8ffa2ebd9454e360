"""Encoders a user can publish and use elsewhere: beside each ``encoder_<m>.pt`` a folder
``encoder_<m>/`` that is a ready Hugging Face model repository.

- ``model.safetensors``: the encoder's state dict (``safetensors.torch``), the model card as JSON in
  its metadata (``cromss_card``);
- ``README.md``: the model card with the Hub's YAML header (:mod:`cromss.weights.hub_card`);
- ``item.json``: a STAC Item with the Machine Learning Model extension (:mod:`cromss.weights.stac_item`).

The encoder file itself is laid out as the Lightning file torchgeo's
``SemanticSegmentationTask(weights=<file>)`` reads (``utils.extract_backbone``:
``hyper_parameters["model"]`` and ``state_dict`` keys ``model.<encoder key>``;
:func:`torchgeo_checkpoint`), so no third copy of the weights is needed for torchgeo.

Every file is written atomically. Only the standard library is imported at module level: the
workflow's Snakefile reads :data:`PUBLISHED`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cromss.errors import CromssError

if TYPE_CHECKING:
    from torch import Tensor

PUBLISHED = ("model.safetensors", "README.md", "item.json")
"""The files of a published encoder folder."""
TORCHGEO_PREFIX = "model."
"""torchgeo's ``extract_backbone`` keeps the keys holding ``model.`` and deletes every ``model.``."""


def published_dir(encoder_path: str | Path) -> Path:
    """The folder published beside an encoder file: ``encoder_s2.pt`` -> ``encoder_s2/``."""
    path = Path(encoder_path)
    return path.with_name(path.stem)


def torchgeo_backbone(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The state dict torchgeo's ``extract_backbone`` takes from ``checkpoint`` (its ``model``
    rule, the one it tries first), reproduced here to check a file without torchgeo."""
    if "model" not in checkpoint.get("hyper_parameters", {}):
        raise CromssError("no hyper_parameters['model']: torchgeo cannot read this checkpoint")
    return {key.replace(TORCHGEO_PREFIX, ""): value
            for key, value in checkpoint["state_dict"].items() if TORCHGEO_PREFIX in key}


def torchgeo_checkpoint(state: Mapping[str, Tensor], card: Mapping[str, Any]) -> dict[str, Any]:
    """The Lightning-style payload of an encoder for torchgeo, refused if torchgeo's key rule would
    not give back exactly ``state`` (an encoder whose own keys hold ``model.``)."""
    clashing = sorted(key for key in state if TORCHGEO_PREFIX in key)
    if clashing:
        raise CromssError(f"the {card['encoder']} encoder has keys holding {TORCHGEO_PREFIX!r} "
                          f"({', '.join(clashing[:3])}): torchgeo's extract_backbone would "
                          "rename them")
    payload = {"state_dict": {TORCHGEO_PREFIX + key: value for key, value in state.items()},
               "hyper_parameters": {"model": "unet", "backbone": str(card["encoder"]),
                                    "in_channels": int(card["in_channels"]),
                                    "num_classes": len(card["classes"]),
                                    "cromss_card": json.loads(json.dumps(card))}}
    return payload


def write_safetensors(path: Path, state: Mapping[str, Tensor], card: Mapping[str, Any]) -> Path:
    """The encoder's tensors as safetensors, the card as JSON text in the metadata."""
    from safetensors.torch import save

    from cromss.atomic import write_file

    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in state.items()}
    blob = save(tensors, metadata={"format": "pt", "cromss_card": json.dumps(card)})
    return write_file(path, lambda handle: handle.write(blob))


def publish_encoder(encoder_path: str | Path, state: Mapping[str, Tensor],
                    card: Mapping[str, Any]) -> list[Path]:
    """Write the :data:`PUBLISHED` files of one encoder into :func:`published_dir`."""
    from cromss.atomic import write_file
    from cromss.weights.hub_card import hub_readme
    from cromss.weights.stac_item import stac_item

    folder = published_dir(encoder_path)
    folder.mkdir(parents=True, exist_ok=True)
    safetensors, readme, item = (folder / name for name in PUBLISHED)
    write_safetensors(safetensors, state, card)
    write_file(readme, lambda handle: handle.write(hub_readme(card).encode()))
    document = json.dumps(stac_item(state, card, folder.name), indent=2) + "\n"
    write_file(item, lambda handle: handle.write(document.encode()))
    return [safetensors, readme, item]


def read_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state_dict, card) of a published ``model.safetensors``."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is no dict)
            card = json.loads((handle.metadata() or {}).get("cromss_card", "{}"))
    except Exception as err:  # safetensors raises its own SafetensorError, OSError ...
        raise CromssError(f"{path}: not a readable safetensors file ({err})") from err
    if not card:
        raise CromssError(f"{path}: no cromss_card in the safetensors metadata")
    return state, card
