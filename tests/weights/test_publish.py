"""The encoder file (torchgeo's layout) and the folder published beside it (safetensors, Hub card,
STAC item), all holding exactly the encoder's weights and card."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch
from huggingface_hub import ModelCard

from cromss import models
from cromss.constants import S2_MEAN
from cromss.errors import CromssError
from cromss.normalisation import InputNormalisation
from cromss.weights import cards, encoders, files, publish

SETTINGS = {"encoder": "resnet18", "fusion": "middle", "s2_bands": 13,
            "decoder_channels": [16, 16, 8, 8, 8], "name": "midF"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor], dict]:
    """An encoder exported by ``save_encoder`` (the pretraining export), its weights and card."""
    model = models.build_model(SETTINGS)
    path = tmp_path_factory.mktemp("publish") / "encoder_s2.pt"
    encoders.save_encoder(path, model, "s2", SETTINGS, cards.provenance())
    state, card = encoders.read_encoder(path)
    assert all(torch.equal(state[k], v) for k, v in model.encoder("s2").state_dict().items())
    return path, state, card


def test_every_file_is_written_beside_the_encoder(exported) -> None:
    path, _, _ = exported
    folder = path.parent / "encoder_s2"
    assert publish.published_dir(path) == folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(publish.PUBLISHED)


def test_safetensors_hold_the_encoder_and_its_card(exported) -> None:
    path, state, card = exported
    tensors, stored_card = publish.read_safetensors(publish.published_dir(path) / "model.safetensors")
    assert tensors.keys() == state.keys()
    assert all(torch.equal(tensors[k], v) for k, v in state.items())
    assert stored_card == card
    unet = smp.Unet("resnet18", encoder_weights=None, in_channels=13, classes=9)
    unet.encoder.load_state_dict(tensors)  # strict: the keys of smp's encoder


def test_the_encoder_file_has_the_layout_torchgeo_reads(exported) -> None:
    path, state, card = exported
    checkpoint = torch.load(path)  # torchgeo's call
    assert checkpoint["card"] == card
    assert all(key.startswith("model.") for key in checkpoint["state_dict"])
    hyper = checkpoint["hyper_parameters"]
    assert (hyper["model"], hyper["backbone"], hyper["in_channels"]) == ("unet", "resnet18", 13)
    assert hyper["cromss_card"] == card
    backbone = publish.torchgeo_backbone(checkpoint)
    assert backbone.keys() == state.keys()
    assert all(torch.equal(backbone[k], v) for k, v in state.items())
    with pytest.raises(CromssError, match="model.conv.weight.*rename"):
        publish.torchgeo_checkpoint({"model.conv.weight": torch.zeros(1)}, card)


def readme_block(folder: Path, first_import: str) -> str:
    """The Python block of the published README whose code starts with ``first_import``."""
    blocks = re.findall(r"```python\n(.*?)```", (folder / "README.md").read_text(), re.S)
    (block,) = [block for block in blocks if block.startswith(first_import)]
    return block


def run_readme(folder: Path, first_import: str, monkeypatch) -> dict:
    monkeypatch.chdir(folder)  # the README's paths are those of the published folder
    namespace: dict = {"NUM_CLASSES": 9}
    exec(readme_block(folder, first_import), namespace)  # as written
    return namespace


def assert_same(loaded: dict, state: dict) -> None:
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_readme_loads_the_weights_with_smp(exported, monkeypatch) -> None:
    path, state, _ = exported
    namespace = run_readme(publish.published_dir(path), "import segmentation_models_pytorch",
                           monkeypatch)
    assert_same(namespace["model"].encoder.state_dict(), state)


def test_readme_transform_is_the_package_transform(exported, monkeypatch) -> None:
    path, _, card = exported
    block = readme_block(publish.published_dir(path), "from cromss.normalisation")
    raw = torch.rand(2, 13, 32, 32) * 5000
    namespace = {"raw": raw}
    exec(block, namespace)
    assert torch.equal(namespace["x"], InputNormalisation.from_card(card)(raw))


def test_torchgeo_loads_exactly_our_weights(exported, monkeypatch) -> None:
    pytest.importorskip("torchgeo.trainers")
    path, state, _ = exported
    namespace = run_readme(publish.published_dir(path), "from torchgeo.trainers", monkeypatch)
    assert_same(namespace["task"].model.encoder.state_dict(), state)


def test_terratorch_loads_exactly_our_weights(exported, monkeypatch) -> None:
    pytest.importorskip("terratorch.models")
    path, state, _ = exported
    folder = publish.published_dir(path)
    smp_route = run_readme(folder, "from safetensors.torch import load_file\nfrom terratorch",
                           monkeypatch)
    assert_same(smp_route["model"].smp_model.encoder.state_dict(), state)
    timm_route = run_readme(folder, "from terratorch.models import EncoderDecoderFactory",
                            monkeypatch)
    assert_same(timm_route["model"].encoder.state_dict(), state)


def test_hub_card_has_the_metadata_header(exported) -> None:
    path, _, card = exported
    text = (publish.published_dir(path) / "README.md").read_text()
    data = ModelCard(text).data.to_dict()
    assert data["license"] == "mit" and data["library_name"] == "segmentation-models-pytorch"
    assert {"sentinel-2", "cromss", "resnet18"} <= set(data["tags"])
    assert "datasets" not in data  # pretrained on the synthetic world, no Hub dataset
    assert data["bands"] == card["bands"] and data["normalisation"]["mean"] == list(S2_MEAN)
    assert data["provenance"]["git_commit"] == card["provenance"]["git_commit"]
    assert "@article{liu2025cromss" in text and "InputNormalisation(\"s2\", bands=13)" in text
    assert "| 8 | snow & ice | `#B39FE1` |" in text


@pytest.mark.xdist_group("release_checkpoints")  # one worker writes the checkpoints
def test_released_weights_are_published_with_their_source(release_checkpoints, tmp_path) -> None:
    from cromss.weights.released import export_release, release

    path, _ = release_checkpoints["release-9B-lateF"]
    source = {"file": path.name, "url": "https://example.invalid/w.ckpt", "licence": "MIT"}
    for written in export_release(path, release("release-9B-lateF"), tmp_path, source):
        folder = publish.published_dir(written)
        state, card = encoders.read_encoder(written)
        tensors, stored = publish.read_safetensors(folder / "model.safetensors")
        assert stored["source"] == source and tensors.keys() == state.keys()
        data = ModelCard((folder / "README.md").read_text()).data.to_dict()
        assert data["datasets"] == ["vikki23/NoLDO-S12"] and data["source"] == source
        backbone = publish.torchgeo_backbone(files.load(written))
        assert all(torch.equal(backbone[k], v) for k, v in state.items())


def test_an_encoder_file_of_cromss_0_1_still_reads(exported, tmp_path) -> None:
    """Before 0.2 an encoder file held the plain keys: ``{"state_dict", "card"}``."""
    path, state, card = exported
    old = tmp_path / "encoder_s2.pt"
    files.save({"state_dict": state, "card": card}, old)
    assert_same(encoders.read_encoder(old)[0], state)
    source = encoders.load_encoder_source(str(old), "s2", None)
    assert_same(source.state_dict, state)
    assert_same(encoders.load_encoder_source(str(path), "s2", None).state_dict, state)
