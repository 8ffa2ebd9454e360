"""An encoder as a STAC Item with the Machine Learning Model extension (MLM v1.5.2): input bands
and their value scaling, output with the pretraining classes (names and colours), architecture,
framework and pretrained source; the assets are the files of the published folder."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cromss.constants import DW_COLORS, UINT8_MAX

if TYPE_CHECKING:
    from torch import Tensor

MLM_SCHEMA = "https://stac-extensions.github.io/mlm/v1.5.2/schema.json"
STAC_VERSION = "1.1.0"
PAPER = "https://arxiv.org/abs/2405.01217"
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def value_scaling(card: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One processing expression per band: the uint8 rule of the card's normalisation."""
    norm = card["normalisation"]
    scaling = []
    for mean, std in zip(norm["mean"], norm["std"], strict=True):
        low, width = mean - 2 * std, 4 * std
        scaling.append({"type": "processing", "format": "python",
                        "expression": f"numpy.floor(numpy.clip((x - {low:.6g}) / {width:.6g} * "
                                      f"{UINT8_MAX}, 0, {UINT8_MAX})) / {UINT8_MAX}"})
    return scaling


def feature_channels(state: Mapping[str, Tensor]) -> int:
    """Channels of the encoder's deepest features: the last convolution's output channels."""
    return int([value for value in state.values() if value.dim() == 4][-1].shape[0])


def pretrained_source(card: Mapping[str, Any]) -> str:
    """Where the pretraining came from, in words: the released file or this workflow's store."""
    source = card.get("source")
    if source:
        return f"CromSS released weights {source.get('file')} ({source.get('url')})"
    origin = card.get("provenance") or {}
    code = f"CromSS pretraining by cromss {card.get('cromss_version')} ({origin.get('git_commit')})"
    data = origin.get("data")
    if not data:
        return f"{code}; its training data are not recorded"
    return (f"{code} on {data.get('kind')} data: {data.get('dataset')} ({data.get('samples')} "
            f"samples, {data.get('source')})")


def model_properties(state: Mapping[str, Tensor], card: Mapping[str, Any]) -> dict[str, Any]:
    """The ``mlm:`` properties of an encoder."""
    import torch

    bands, encoder = list(card["bands"]), str(card["encoder"])
    return {
        "mlm:name": f"cromss-{card.get('variant')}-{card['modality']}-encoder",
        "mlm:architecture": f"{encoder} (segmentation_models_pytorch encoder of a U-Net)",
        "mlm:tasks": ["semantic-segmentation"],
        "mlm:framework": "PyTorch",
        "mlm:framework_version": torch.__version__.split("+")[0],
        "mlm:pretrained": True,
        "mlm:pretrained_source": pretrained_source(card),
        "mlm:total_parameters": sum(int(v.numel()) for k, v in state.items()
                                    if not k.endswith(BUFFERS)),
        "mlm:accelerator": None,
        "mlm:input": [{
            "name": f"{card['modality']}_bands",
            "description": "raw bands, scaled per band to uint8 levels / 255 "
                           "(cromss.normalisation.InputNormalisation)",
            "bands": bands,
            "input": {"shape": [-1, len(bands), -1, -1],
                      "dim_order": ["batch", "bands", "height", "width"], "data_type": "float32"},
            "value_scaling": value_scaling(card),
            "pre_processing_function": {
                "format": "python",
                "expression": f"cromss.normalisation:InputNormalisation('{card['modality']}', "
                              f"bands={len(bands)})"},
        }],
        "mlm:output": [{
            "name": "features",
            "description": "the encoder's deepest feature map (stride 32); the classes are those "
                           "its CromSS pretraining segmented (Dynamic World), whose decoder and "
                           "head are not in this model",
            "tasks": ["semantic-segmentation"],
            "result": {"shape": [-1, feature_channels(state), -1, -1],
                       "dim_order": ["batch", "channel", "height", "width"],
                       "data_type": "float32"},
            "classification:classes": [
                {"value": i, "name": name, "color_hint": DW_COLORS[i].lstrip("#"),
                 "description": f"Dynamic World class {name!r} (a CromSS pretraining target)"}
                for i, name in enumerate(card["classes"])],
        }],
        "mlm:hyperparameters": {"fusion": card.get("fusion"), "variant": card.get("variant"),
                                "in_channels": card["in_channels"]},
    }


def stac_item(state: Mapping[str, Tensor], card: Mapping[str, Any], item_id: str
              ) -> dict[str, Any]:
    """The STAC Item (MLM extension) of a published encoder folder."""
    bands = [{"name": band, "description": f"{card['modality'].upper()} band {band}"}
             for band in card["bands"]]
    weights = {"type": "application/octet-stream; application=safetensors",
               "roles": ["mlm:model", "mlm:weights"],
               "mlm:artifact_type": "safetensors.torch.save_file"}
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [MLM_SCHEMA],
        "id": f"cromss-{card.get('variant')}-{item_id}",
        "geometry": None,
        "properties": {
            "datetime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "description": f"CromSS-pretrained {card['encoder']} encoder for "
                           f"{card['modality'].upper()} ({len(bands)} bands)",
            "license": "MIT",
            "bands": bands,
            **model_properties(state, card),
        },
        "links": [{"rel": "cite-as", "href": PAPER, "type": "text/html",
                   "title": "CromSS: cross-modal pretraining with noisy labels"}],
        "assets": {
            # the bands twice: MLM reads them in properties, STAC 1.1.0 allows them there only
            # when an asset has them too
            "weights": {"href": "./model.safetensors", "title": "encoder weights", **weights,
                        "bands": bands},
            "torchgeo": {"href": f"../encoder_{card['modality']}.pt",
                         "title": "torchgeo SemanticSegmentationTask weights file (the encoder "
                         "file)", "type": "application/octet-stream",
                         "roles": ["mlm:model", "mlm:weights"], "mlm:artifact_type": "torch.save"},
            "card": {"href": "./README.md", "type": "text/markdown", "roles": ["metadata"],
                     "title": "model card"},
        },
    }
