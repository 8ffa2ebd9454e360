"""CromSS models (method §2): every fusion runs forward and backward; encoder transfer."""

from __future__ import annotations

import pytest
import segmentation_models_pytorch as smp
import torch

from cromss.models import build_model
from cromss.weights.encoders import (
    load_encoder,
    load_encoder_state,
    read_encoder,
    save_encoder,
    strip_prefix,
)

SIZE = 32


class BaseModelTest:
    """smp-style shared checks; subclasses set the fusion and what it produces."""

    fusion: str
    s2_bands = 9
    produces = (True, True)

    @pytest.fixture(scope="class")
    @classmethod
    def settings(cls):
        return {"fusion": cls.fusion, "encoder": "resnet18", "s2_bands": cls.s2_bands,
                "decoder_channels": [32, 16, 16, 8, 8], "name": f"test-{cls.fusion}"}

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, settings):
        torch.manual_seed(0)
        return build_model(settings)

    def inputs(self):
        return torch.randn(2, 2, SIZE, SIZE), torch.randn(2, self.s2_bands, SIZE, SIZE)

    def test_forward_shapes(self, model):
        outputs = model(*self.inputs())
        for made, output in zip(self.produces, outputs, strict=True):
            assert (output is not None) == made
            if made:
                assert output.shape == (2, 9, SIZE, SIZE)

    def test_backward_reaches_every_parameter(self, model):
        model.zero_grad()
        loss = sum(out.square().mean() for out in model(*self.inputs()) if out is not None)
        loss.backward()
        assert all(p.grad is not None and bool(p.grad.abs().sum() > 0)
                   for p in model.parameters())

    def test_encoder_file_round_trip(self, model, settings, tmp_path):
        for modality, in_channels in (("s1", 2), ("s2", self.s2_bands)):
            if modality not in model.modalities:
                with pytest.raises(ValueError, match="no 's1' encoder|no 's2' encoder"):
                    model.encoder(modality)
                continue
            path = save_encoder(tmp_path / f"encoder_{modality}.pt", model, modality, settings)
            checkpoint = torch.load(path, weights_only=True)
            card = checkpoint["card"]
            assert set(card) == {"encoder", "modality", "in_channels", "bands", "normalisation",
                                 "classes", "variant", "fusion", "settings", "cromss_version",
                                 "provenance"}
            assert (card["modality"], card["in_channels"], len(card["bands"])) == (
                modality, in_channels, in_channels)
            assert len(card["normalisation"]["mean"]) == in_channels
            downstream = smp.DeepLabV3Plus(encoder_name="resnet18", encoder_weights=None,
                                           in_channels=in_channels, classes=9)
            assert load_encoder(downstream.encoder, path) == card
            for key, value in model.encoder(modality).state_dict().items():
                assert torch.equal(downstream.encoder.state_dict()[key], value)


class TestSingleS1(BaseModelTest):
    fusion = "single_s1"
    produces = (True, False)


class TestSingleS2(BaseModelTest):
    fusion = "single_s2"
    produces = (False, True)


class TestMiddleFusion(BaseModelTest):
    fusion = "middle"
    s2_bands = 13

    def test_one_shared_decoder_and_head(self, model):
        names = {name.split(".")[0] for name, _ in model.named_parameters()}
        assert names == {"encoder_s1", "encoder_s2", "decoder", "segmentation_head"}

    def test_each_modality_decoded_separately(self, model):
        s1, s2 = self.inputs()
        model.eval()
        logits_s1, logits_s2 = model(s1, s2)
        logits_s1_alone, _ = model(s1, torch.zeros_like(s2))
        model.train()
        assert torch.allclose(logits_s1, logits_s1_alone)
        assert not torch.allclose(logits_s1, logits_s2)

    def test_rejects_sizes_not_divisible_by_32(self, model):
        with pytest.raises(ValueError, match="divisible by 32"):
            model(torch.randn(1, 2, 40, 40), torch.randn(1, 13, 40, 40))


class TestLateFusion(BaseModelTest):
    fusion = "late"

    def test_two_independent_unets(self, model):
        assert model.unet_s1.decoder is not model.unet_s2.decoder
        assert model.encoder("s2").conv1.in_channels == self.s2_bands


def test_unknown_fusion_and_bands_raise():
    with pytest.raises(ValueError, match="fusion"):
        build_model({"fusion": "early", "encoder": "resnet18"})
    with pytest.raises(ValueError, match="13 or 9"):
        build_model({"fusion": "late", "encoder": "resnet18", "s2_bands": 4})


def test_load_encoder_state_names_channels_and_keys():
    encoder = smp.Unet("resnet18", encoder_weights=None, in_channels=2).encoder
    state = encoder.state_dict()
    wrong_bands = smp.Unet("resnet18", encoder_weights=None, in_channels=13).encoder
    with pytest.raises(ValueError, match="ckpt: the first convolution has 2 input channels, "
                                         "the model expects 13"):
        load_encoder_state(wrong_bands, state, "ckpt")
    partial = {k: v for k, v in state.items() if not k.startswith("layer4")}
    partial["head.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"ckpt: .*missing keys: layer4\..*unexpected keys: "
                                         r"head\.weight"):
        load_encoder_state(encoder, partial, "ckpt")


def test_strip_prefix_and_unreadable_files(tmp_path):
    state = {"model.encoder1.conv1.weight": torch.ones(1), "model.decoder.x": torch.ones(1)}
    assert set(strip_prefix(state, "model.encoder1.")) == {"conv1.weight"}
    with pytest.raises(ValueError, match="prefix"):
        strip_prefix(state, "encoder.")
    with pytest.raises(FileNotFoundError):
        read_encoder(tmp_path / "missing.pt")
    torch.save({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is no encoder file"):
        read_encoder(tmp_path / "other.pt")
