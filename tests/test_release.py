"""Released CromSS weights: full Lightning checkpoints read safely, fetched through the Hugging
Face source from a loopback server, exported as encoders with provenance cards."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from helpers.loopback import LoopbackServer

from cromss import cli
from cromss.settings import Finetune
from cromss.sources.http import file_digests
from cromss.weights import encoders, files
from cromss.weights import released as release

PREFIXES = {"midF": ("encoder1", "encoder"), "lateF": ("model1.encoder", "model2.encoder")}


def test_release_names_map_to_the_published_files():
    assert [release.release(n).file for n in release.RELEASES] == [
        "weights-cromss-13B-midFusion-epoch=199.ckpt", "weights-cromss-13B-lateFusion-epoch=199.ckpt",
        "weights-cromss-9B-midFusion-epoch=199.ckpt", "weights-cromss-9B-lateFusion-epoch=199.ckpt"]
    with pytest.raises(ValueError, match="not a released CromSS encoder"):
        release.release("release-12B-midF")


@pytest.mark.xdist_group("release_checkpoints")  # one worker writes the checkpoints
def test_full_lightning_checkpoints_load_with_only_the_namespace_allowed(release_checkpoints):
    for name, (path, _) in release_checkpoints.items():
        with pytest.raises(pickle.UnpicklingError, match="argparse.Namespace"):
            torch.load(path, weights_only=True)  # what a plain weights_only read says
        payload = files.load(path)
        assert {"hyper_parameters", "optimizer_states", "lr_schedulers", "loops", "callbacks",
                "state_dict", "epoch", "pytorch-lightning_version"} <= set(payload)
        assert payload["hyper_parameters"]["args"].n_channels == release.release(name).s2_bands
        assert any(k.startswith("net.") for k in payload["state_dict"])


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_that_runs_code_is_still_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "weights-cromss-13B-midFusion-epoch=199.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"args": _RunsCode()}}, evil)
    with pytest.raises(ValueError, match="weights-only"):
        files.load(evil)
    with pytest.raises(ValueError, match="weights-only"):
        release.export_release(evil, release.release("release-13B-midF"), tmp_path / "out", {})
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def hf_server(release_checkpoints):
    path, _ = next(iter(release_checkpoints.values()))
    with LoopbackServer(path.parents[5]) as server:
        yield server


@pytest.mark.xdist_group("release_checkpoints")  # one worker writes the checkpoints
def test_each_release_is_fetched_and_exported_with_its_provenance(release_checkpoints, hf_server,
                                                                  tmp_path):
    settings = {"huggingface_url": hf_server.url, "download_dir": str(tmp_path / "downloads"),
                "retry": {"attempts": 2, "backoff_s": 0.01, "timeout_s": 10}}
    for name, (path, module) in release_checkpoints.items():
        rel = release.release(name)
        # an interrupted first download resumes where it stopped
        hf_server.drop_after[f"/datasets/vikki23/NoLDO-S12/resolve/main/{rel.file}"] = (
            path.stat().st_size // 2)
        out = tmp_path / "pretrain" / name
        assert cli.main(["weights", "release", "--name", name, "--settings", json.dumps(settings),
                         "--out", str(out), "--quiet"]) == 0
        digests = file_digests(path)
        s1_prefix, s2_prefix = PREFIXES[name.rsplit("-", 1)[1]]
        for modality, prefix, bands in (("s1", s1_prefix, 2), ("s2", s2_prefix, rel.s2_bands)):
            state, card = encoders.read_encoder(out / f"encoder_{modality}.pt")
            assert card["source"]["sha256"] == digests["sha256"]
            assert card["source"]["md5"] == digests["md5"]
            assert card["source"]["file"] == rel.file and "MIT" in card["source"]["licence"]
            assert card["source"]["repository"] == "huggingface.co/datasets/vikki23/NoLDO-S12"
            assert card["in_channels"] == bands and len(card["bands"]) == bands
            assert card["normalisation"]["quantisation"].startswith("uint8")
            assert card["variant"] == name and card["encoder"] == "mobilenet_v2"
            assert card["settings"]["reference_args"]["n_channels"] == rel.s2_bands
            reference = module.net.get_submodule(prefix).state_dict()
            assert state.keys() == reference.keys()
            for key, value in reference.items():
                assert torch.equal(state[key], value)
            source = encoders.load_encoder_source(str(out / f"encoder_{modality}.pt"), modality,
                                                  Finetune.parse({}))
            assert (source.weights, source.in_channels) == (name, bands)
    ranged = [r for r in hf_server.requests if r[2]]
    assert len(ranged) == 4  # one resumed request per file


@pytest.mark.xdist_group("release_checkpoints")  # one worker writes the checkpoints
def test_a_file_that_is_not_the_named_release_is_refused(release_checkpoints, tmp_path):
    path, _ = release_checkpoints["release-13B-lateF"]
    with pytest.raises(ValueError, match="no middle-fusion encoders"):
        release.export_release(path, release.release("release-13B-midF"), tmp_path, {})
    nine, _ = release_checkpoints["release-9B-midF"]
    with pytest.raises(ValueError, match="takes 9 bands, the release name says 13"):
        release.export_release(nine, release.release("release-13B-midF"), tmp_path, {})
