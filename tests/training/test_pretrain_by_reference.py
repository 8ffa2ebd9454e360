"""A pretrained model.pt whose encoders were exported beside it refers to them: small, loaded bit
for bit, and a missing or other encoder file is named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from cromss import models
from cromss.cli import main
from cromss.errors import CromssError
from cromss.weights import by_reference, encoders, files, trained
from helpers.settings import PRETRAIN_SETTINGS
from helpers.stores import write_store


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``cromss pretrain run --export-encoders`` on a tiny store; ``whole.pt`` beside its output
    is model.pt as training wrote it, before it was made to refer to the encoder files."""
    root = tmp_path_factory.mktemp("byref")
    store = write_store(root / "nol.zarr", samples=6, size=32)
    out = root / "midF"
    refer = by_reference.refer_to_encoders

    def keep_whole(model_path: Path, exported: dict[str, Path]) -> Path:
        shutil.copyfile(model_path, root / "whole.pt")
        return refer(model_path, exported)

    settings = {**PRETRAIN_SETTINGS, "epochs": 1}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(by_reference, "refer_to_encoders", keep_whole)
        assert main(["pretrain", "run", "--store", str(store), "--settings", json.dumps(settings),
                     "--out", str(out), "--threads", "1", "--export-encoders"]) == 0
    return out


def test_model_refers_to_its_encoders_and_loads_bit_for_bit(run: Path) -> None:
    whole_file = run.parent / "whole.pt"
    assert (run / "model.pt").stat().st_size < 0.05 * whole_file.stat().st_size
    payload = files.load(run / "model.pt")
    references = payload[by_reference.REFERENCES]
    assert {m: (r["file"], r["prefix"]) for m, r in references.items()} == {
        "s1": ("encoder_s1.pt", "encoder_s1."), "s2": ("encoder_s2.pt", "encoder_s2.")}
    assert references["s2"]["sha256"] == by_reference.sha256(run / "encoder_s2.pt")
    assert not any(k.startswith(("encoder_s1.", "encoder_s2.")) for k in payload["state_dict"])
    whole = files.load(whole_file)
    assert payload["settings"] == whole["settings"]
    assert payload["provenance"] == whole["provenance"]
    state = trained.load_model(run / "model.pt")[0].state_dict()
    assert state.keys() == whole["state_dict"].keys()
    assert all(torch.equal(state[k], v) for k, v in whole["state_dict"].items())


def test_old_model_files_without_references_still_load(run: Path) -> None:
    whole = files.load(run.parent / "whole.pt")
    assert by_reference.REFERENCES not in whole
    state = trained.load_model(run.parent / "whole.pt")[0].state_dict()
    assert all(torch.equal(state[k], v) for k, v in whole["state_dict"].items())


def test_weights_export_of_a_referring_model_writes_the_same_encoder(run: Path,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "encoder_s1.pt"
    assert main(["weights", "export", "--model", str(run / "model.pt"), "--modality", "s1",
                 "--out", str(out)]) == 0
    again, card = encoders.read_encoder(out)
    exported, exported_card = encoders.read_encoder(run / "encoder_s1.pt")
    assert card == exported_card and again.keys() == exported.keys()
    assert all(torch.equal(again[k], v) for k, v in exported.items())


def test_a_missing_or_other_encoder_file_is_named(run: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(run, tmp_path / "midF")
    model, encoder = copy / "model.pt", copy / "encoder_s2.pt"
    settings = files.load(model)["settings"]
    torch.manual_seed(1)  # pretrained again: other weights under the same name
    encoders.save_encoder(encoder, models.build_model(settings), "s2", settings)
    with pytest.raises(CromssError, match=f"^{model}: {encoder} is not the encoder file it was "
                                          f"exported with .*pretrained again"):
        trained.load_model(model)
    encoder.unlink()
    with pytest.raises(CromssError, match=f"^{model}: its s2 encoder weights are those of "
                                          f"{encoder}, which is missing"):
        trained.export_encoder(model, "s1", tmp_path / "encoder_s1.pt")


def test_weights_unlike_the_encoder_file_are_kept(run: Path, tmp_path: Path) -> None:
    model = shutil.copy(run.parent / "whole.pt", tmp_path / "model.pt")
    settings = files.load(model)["settings"]
    other = encoders.save_encoder(tmp_path / "encoder_s2.pt", models.build_model(settings), "s2",
                                  settings)
    shutil.copy(run / "encoder_s1.pt", tmp_path / "encoder_s1.pt")
    by_reference.refer_to_encoders(model, {"s1": tmp_path / "encoder_s1.pt", "s2": other})
    references = files.load(model)[by_reference.REFERENCES]
    assert "s2" not in references and len(references["s1"]["keys"]) > 100
    whole = files.load(run.parent / "whole.pt")["state_dict"]
    state = trained.load_model(model)[0].state_dict()
    assert all(torch.equal(state[k], v) for k, v in whole.items())
    with pytest.raises(ValueError, match="is not beside"):
        by_reference.refer_to_encoders(model, {"s1": run / "encoder_s1.pt"})


def test_prefix_of_each_fusion_encoder() -> None:
    settings = {"encoder": "resnet18", "s2_bands": 9, "decoder_channels": [8, 8, 8, 8, 8]}
    late = models.build_model({**settings, "fusion": "late"})
    assert by_reference.prefix(late, late.encoder("s2")) == "unet_s2.encoder."
    single = models.build_model({**settings, "fusion": "single_s1"})
    assert by_reference.prefix(single, single.encoder("s1")) == "unet.encoder."
