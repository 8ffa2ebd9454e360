"""Fine-tuned weights stored by reference to their encoder file: exact round trip and its checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cromss import models
from cromss.errors import CromssError
from cromss.models import build_downstream
from cromss.weights import by_reference, encoders


@pytest.fixture()
def encoder_file(tmp_path: Path) -> Path:
    settings = {"name": "midF", "fusion": "middle", "encoder": "resnet18", "s2_bands": 13,
                "decoder_channels": [32, 16, 16, 8, 8]}
    torch.manual_seed(0)
    path = tmp_path / "encoder_s2.pt"
    encoders.save_encoder(path, models.build_model(settings), "s2", settings)
    return path


def frozen_state(encoder_file: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(a frozen run's whole state: the file's encoder with other BN statistics, the file's)"""
    loaded = encoders.read_encoder(encoder_file)[0]
    model = build_downstream("dw", "resnet18", 13)
    model.encoder.load_state_dict(loaded)
    model.encoder.bn1.running_mean += 0.5  # what training with frozen_batchnorm: update changes
    return {k: v.clone() for k, v in model.state_dict().items()}, loaded


def test_frozen_weights_left_out_and_restored_bit_for_bit(encoder_file: Path) -> None:
    state, loaded = frozen_state(encoder_file)
    kept, reference = by_reference.split(state, loaded, str(encoder_file))
    assert reference is not None and reference["file"] == str(encoder_file)
    assert "encoder.conv1.weight" not in kept and "encoder.bn1.running_mean" in kept
    assert "decoder.aspp.0.0.weight" in kept or any(k.startswith("decoder.") for k in kept)
    stored = sum(v.numel() for v in kept.values())
    assert stored < 0.15 * sum(v.numel() for v in state.values())
    whole = by_reference.full_state(Path("model.pt"), {"card": {by_reference.KEY: reference,
                                                               "modality": "s2"},
                                                      "state_dict": kept})
    assert whole.keys() == state.keys()
    assert all(torch.equal(whole[k], state[k]) for k in state)


def test_changed_weights_and_random_encoders_are_stored_whole(encoder_file: Path) -> None:
    state, loaded = frozen_state(encoder_file)
    changed = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    kept, reference = by_reference.split(changed, loaded, str(encoder_file))
    assert all(k in kept for k, v in changed.items() if v.is_floating_point())
    assert reference is not None and all(k.endswith("num_batches_tracked")
                                         for k in reference["keys"])
    assert by_reference.split(state, None, "random") == (state, None)


def test_a_missing_or_other_encoder_file_is_named(encoder_file: Path, tmp_path: Path) -> None:
    state, loaded = frozen_state(encoder_file)
    kept, reference = by_reference.split(state, loaded, str(encoder_file))
    payload = {"card": {by_reference.KEY: reference, "modality": "s2"}, "state_dict": kept}
    model = tmp_path / "model.pt"
    encoder_file.write_bytes(encoder_file.read_bytes() + b"\0")
    with pytest.raises(CromssError, match=f"{encoder_file} is not the encoder file it was trained"):
        by_reference.full_state(model, payload)
    encoder_file.unlink()
    with pytest.raises(CromssError, match=f"{model}: its frozen encoder weights are those of "
                                          f"{encoder_file}, which is missing"):
        by_reference.full_state(model, payload)
