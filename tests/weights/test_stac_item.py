"""The STAC Item beside each encoder is valid against the MLM extension's published schema (and
STAC 1.1 core), vendored for offline use, and says what the encoder needs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from cromss import models
from cromss.constants import DW_COLORS, input_normalisation
from cromss.normalisation import normalise
from cromss.weights import cards, encoders, publish
from helpers.stac_schemas import MLM, STAC_ITEM, errors

SETTINGS = {"encoder": "resnet18", "fusion": "middle", "s2_bands": 9,
            "decoder_channels": [16, 16, 8, 8, 8], "name": "midF-9B"}


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("stac")
    model = models.build_model(SETTINGS)
    out = {}
    for modality in ("s1", "s2"):
        path = encoders.save_encoder(folder / f"encoder_{modality}.pt", model, modality, SETTINGS,
                                     cards.provenance())
        out[modality] = json.loads((publish.published_dir(path) / "item.json").read_text())
    return out


@pytest.mark.parametrize("modality", ["s1", "s2"])
def test_item_is_valid_mlm_and_stac(items, modality) -> None:
    item = items[modality]
    assert MLM in item["stac_extensions"]
    assert errors(item, MLM) == []
    assert errors(item, STAC_ITEM) == []


def test_schema_check_catches_broken_items(items) -> None:
    for path, value in ((("properties", "mlm:output", 0, "classification:classes", 0,
                          "color_hint"), "#419BDF"),
                        (("properties", "mlm:tasks"), ["segmenting"]),
                        (("assets", "weights", "roles"), ["data"]),
                        (("properties", "bands"), [])):
        broken = copy.deepcopy(items["s2"])
        target = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert errors(broken, MLM) != [], path


def test_item_describes_bands_scaling_classes_and_source(items) -> None:
    props = items["s2"]["properties"]
    (model_input,) = props["mlm:input"]
    norm = input_normalisation("s2", 9)
    assert model_input["bands"] == norm["bands"] and model_input["input"]["shape"][1] == 9
    assert "InputNormalisation('s2', bands=9)" in model_input["pre_processing_function"]["expression"]
    # each band's expression, evaluated, is the training scaling of that band
    import numpy
    values = numpy.linspace(-1000, 9000, 64, dtype=numpy.float32)
    for i, scaling in enumerate(model_input["value_scaling"]):
        got = eval(scaling["expression"], {"numpy": numpy, "x": values})
        expected = normalise(values[None, :, None], [norm["mean"][i]], [norm["std"][i]])[0, :, 0]
        assert numpy.array_equal(got.astype(numpy.float32), expected), norm["bands"][i]
    (output,) = props["mlm:output"]
    assert [c["name"] for c in output["classification:classes"]][:2] == ["water", "trees"]
    assert [f"#{c['color_hint']}" for c in output["classification:classes"]] == list(DW_COLORS)
    assert output["result"]["shape"][1] == 512  # resnet18's layer4
    assert props["mlm:framework"] == "PyTorch" and props["mlm:pretrained"] is True
    source = props["mlm:pretrained_source"]
    assert source.startswith("CromSS pretraining by cromss") and "not recorded" in source
    assert props["mlm:architecture"].startswith("resnet18")
    assets = items["s2"]["assets"]
    assert {a["href"] for a in assets.values()} == {f"./{n}" for n in publish.PUBLISHED
                                                   if n != "item.json"} | {"../encoder_s2.pt"}
    assert Path(assets["weights"]["href"]).name == "model.safetensors"
