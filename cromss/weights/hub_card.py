"""An encoder's model card as the ``README.md`` of a Hugging Face model repository: the YAML header
the Hub reads (licence, tags, datasets, library, pipeline) with the bands, normalisation and
provenance, then how to use the weights (cromss, segmentation_models_pytorch, torchgeo, TerraTorch)
and the citation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cromss.constants import DW_COLORS

NOLDO = "vikki23/NoLDO-S12"
"""The Hugging Face dataset of the CromSS pretraining data and the released weights."""
CITATION = """@article{liu2025cromss,
  title   = {CromSS: Cross-modal pretraining with noisy labels for remote sensing image segmentation},
  author  = {Liu, Chenying and Albrecht, Conrad M. and Wang, Yi and Zhu, Xiao Xiang},
  journal = {IEEE Transactions on Geoscience and Remote Sensing},
  volume  = {63},
  year    = {2025},
  note    = {arXiv:2405.01217}
}"""
SENSORS = {"s1": ("sentinel-1", "Sentinel-1 GRD backscatter in dB"),
           "s2": ("sentinel-2", "Sentinel-2 L1C top-of-atmosphere digital numbers")}


def trained_on(card: Mapping[str, Any]) -> list[str]:
    """Hub dataset ids of the pretraining data: NoLDO-S12 for the released weights and real stores."""
    kind = (card.get("provenance", {}).get("data") or {}).get("kind")
    return [NOLDO] if "source" in card or kind == "real" else []


def front_matter(card: Mapping[str, Any]) -> str:
    """The YAML header (Hub metadata) of an encoder's card."""
    from huggingface_hub import ModelCardData

    sensor, _ = SENSORS[card["modality"]]
    data = ModelCardData(
        license="mit", library_name="segmentation-models-pytorch", pipeline_tag="image-segmentation",
        datasets=trained_on(card) or None,
        tags=["cromss", "remote-sensing", "earth-observation", sensor, "semantic-segmentation",
              "pretraining", "noisy-labels", "torchgeo", str(card["encoder"])],
        modality=card["modality"], encoder=card["encoder"], in_channels=card["in_channels"],
        bands=list(card["bands"]), normalisation=dict(card["normalisation"]),
        classes=list(card["classes"]), variant=card.get("variant"), fusion=card.get("fusion"),
        provenance=dict(card.get("provenance") or {}), source=card.get("source"),
    )
    return data.to_yaml()


def timm_route(card: Mapping[str, Any]) -> str:
    """TerraTorch's timm backbones read the file themselves; smp's ResNet encoders have timm's
    ResNet keys (no other encoder of ours does)."""
    encoder, bands = card["encoder"], card["in_channels"]
    if not str(encoder).startswith("resnet"):
        return ""
    return f"""
or through its timm backbones, which read the file with a checkpoint path:

```python
from terratorch.models import EncoderDecoderFactory
model = EncoderDecoderFactory().build_model(
    task="segmentation", backbone="timm_{encoder}", decoder="FCNDecoder", num_classes=NUM_CLASSES,
    backbone_pretrained=True, backbone_in_chans={bands},
    backbone_pretrained_cfg_overlay={{"file": "model.safetensors"}})
```
"""


def usage(card: Mapping[str, Any]) -> str:
    """How to load the files of the folder: cromss transform, smp, torchgeo and TerraTorch."""
    modality, encoder, bands = card["modality"], card["encoder"], card["in_channels"]
    return f"""## Use

Inputs: {bands} bands, ({', '.join(card['bands'])}), {SENSORS[modality][1]}, each mapped from
[mean - 2 std, mean + 2 std] to [0, 255], truncated to uint8 levels and divided by 255. The
transform is in the `cromss` package and gives exactly the training inputs:

```python
from cromss.normalisation import InputNormalisation
x = InputNormalisation("{modality}", bands={bands})(raw)  # (B, {bands}, H, W), H and W multiples of 32
```

segmentation_models_pytorch (the encoder of a U-Net; `model.safetensors` holds `encoder.*` keys
without the prefix):

```python
import segmentation_models_pytorch as smp
from safetensors.torch import load_file
model = smp.Unet("{encoder}", encoder_weights=None, in_channels={bands}, classes=NUM_CLASSES)
model.encoder.load_state_dict(load_file("model.safetensors"))
```

torchgeo reads, through its own loading path, the encoder file this folder was made from,
`encoder_{modality}.pt` beside it (Lightning's layout; publish it with the folder):

```python
from torchgeo.trainers import SemanticSegmentationTask
task = SemanticSegmentationTask(model="unet", backbone="{encoder}", weights="../encoder_{modality}.pt",
                                in_channels={bands}, num_classes=NUM_CLASSES)
```

TerraTorch, through its smp factory (any encoder):

```python
from safetensors.torch import load_file
from terratorch.models import SMPModelFactory
model = SMPModelFactory().build_model(task="segmentation", backbone="{encoder}", model="Unet",
                                      bands=list(range({bands})), in_channels={bands},
                                      num_classes=NUM_CLASSES, pretrained=False)
model.smp_model.encoder.load_state_dict(load_file("model.safetensors"))
```
{timm_route(card)}"""


def hub_readme(card: Mapping[str, Any]) -> str:
    """The ``README.md`` of a published encoder."""
    name = card.get("variant") or "cromss"
    classes = "\n".join(f"| {i} | {c} | `{DW_COLORS[i]}` |" for i, c in enumerate(card["classes"]))
    origin = card.get("source") or card.get("provenance") or {}
    provenance = "\n".join(f"- {key}: {value}" for key, value in origin.items()
                           if not isinstance(value, (dict, list)))
    return f"""---
{front_matter(card)}
---

# CromSS {card['modality'].upper()} encoder: {name}

A `{card['encoder']}` encoder (segmentation_models_pytorch, depth 5) for
{SENSORS[card['modality']][1]}, pretrained with CromSS (cross-modal pretraining with noisy labels,
{card.get('fusion')} fusion) to segment the Dynamic World classes below. The decoder and
segmentation head of the pretraining are not part of this repository: fine-tune a decoder on your
task. `item.json` describes the model as a STAC Item (Machine Learning Model extension).

{usage(card)}
## Pretraining classes

| value | class | colour |
|---|---|---|
{classes}

## Provenance

{provenance}

## Citation

```bibtex
{CITATION}
```
"""
