"""Any model the workflow makes, as one predictor of class probabilities with its input contract.

Three kinds of file are recognised by their contents (all read with ``weights_only=True``):

- a fine-tuned downstream model (``results/finetune/.../model.pt``: ``state_dict`` + ``card`` with
  a ``task``): one modality in, the task's classes out;
- a pretrained CromSS model (``results/pretrain/<variant>/model.pt``: ``state_dict`` +
  ``settings``): single-modal, or a fusion of S1 and S2 whose map averages the two branches'
  softmax (the branches are never averaged in training; for a map, the mean is the fused output);
- a released CromSS Lightning checkpoint (``state_dict`` under ``net.``): middle fusion
  (``net.encoder1`` S1, ``net.encoder`` S2, one ``net.decoder``) or late fusion (``net.model1``,
  ``net.model2``), loaded into this package's fusion models.

The model card (or settings) decides the bands of each modality and their normalisation (clip to
mean +- 2 std, scale to [0, 1], as in training); nodata pixels are filled with the band mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cromss import models
from cromss.constants import DW_CLASSES, DW_COLORS, TASKS, input_normalisation
from cromss.errors import CromssError
from cromss.normalisation import normalise
from cromss.training.datasets import SIZE_MULTIPLE
from cromss.weights import files
from cromss.weights.released import released_model
from cromss.weights.trained import load_downstream, load_model


@dataclass
class Predictor:
    """A model in eval mode with the inputs it needs and the classes it maps."""

    module: nn.Module
    kind: str  # finetuned | pretrained | released
    modalities: tuple[str, ...]  # the inputs, in the order the module takes them
    normalisation: dict[str, dict[str, list]]  # modality -> bands, mean, std
    classes: list[str]
    colors: list[str]
    source: str
    device: torch.device = torch.device("cpu")

    @property
    def branches(self) -> int:
        """1, or 2 for a fusion model (one probability map per modality)."""
        return 2 if self.kind != "finetuned" and len(self.modalities) == 2 else 1

    @property
    def channels(self) -> int:
        return self.branches * len(self.classes)

    def bands(self, modality: str) -> list[str]:
        return list(self.normalisation[modality]["bands"])

    def to(self, device: str | torch.device) -> Predictor:
        self.device = torch.device(device)
        self.module.to(self.device)
        return self

    def prepare(self, modality: str, raw: np.ndarray) -> np.ndarray:
        """Raw bands (bands, h, w) in the card's order, NaN = nodata -> normalised input."""
        norm = self.normalisation[modality]
        mean = np.asarray(norm["mean"], np.float32)[:, None, None]
        filled = np.where(np.isfinite(raw), raw, mean)
        return normalise(filled, norm["mean"], norm["std"])

    def _logits(self, tensors: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        if self.kind == "finetuned":
            return [self.module(tensors[self.modalities[0]])]
        outputs = self.module(tensors.get("s1"), tensors.get("s2"))
        return [logits for logits in outputs if logits is not None]

    @torch.no_grad()
    def __call__(self, inputs: list[dict[str, np.ndarray]]) -> np.ndarray:
        """Probabilities (N, branches * classes, h, w) of N prepared inputs of one shape."""
        tensors = {m: torch.from_numpy(np.stack([item[m] for item in inputs])).to(self.device)
                   for m in self.modalities}
        height, width = next(iter(tensors.values())).shape[-2:]
        pad = (0, -width % SIZE_MULTIPLE, 0, -height % SIZE_MULTIPLE)
        if any(pad):
            mode = "reflect" if max(pad) < min(height, width) else "replicate"
            tensors = {m: F.pad(t, pad, mode=mode) for m, t in tensors.items()}
        probabilities = [logits.float().softmax(1)[..., :height, :width]
                         for logits in self._logits(tensors)]
        return torch.cat(probabilities, 1).cpu().numpy()


def _finetuned(path: Path, card: dict[str, Any]) -> Predictor:
    module, card = load_downstream(path)
    modality = card["modality"]
    norm = card.get("normalisation") or input_normalisation(modality, card["in_channels"])
    return Predictor(module, "finetuned", (modality,), {modality: norm}, list(card["classes"]),
                     list(TASKS[card["task"]][2]), str(path))


def _fusion_predictor(module: models.CromssModel, kind: str, settings: dict[str, Any],
                      path: Path) -> Predictor:
    classes = int(settings.get("num_classes", len(DW_CLASSES)))
    s2_bands = int(settings["s2_bands"])
    norms = {m: input_normalisation(m, s2_bands) for m in module.modalities}
    return Predictor(module.eval(), kind, tuple(module.modalities), norms,
                     list(DW_CLASSES[:classes]), list(DW_COLORS[:classes]), str(path))


def _released(path: Path, state: dict[str, torch.Tensor]) -> Predictor:
    module, settings = released_model(path, state)
    return _fusion_predictor(module, "released", settings, path)


def load_predictor(path: str | Path, device: str | torch.device | None = None) -> Predictor:
    """The predictor of a fine-tuned model, a pretrained model or a released checkpoint."""
    path = Path(path)
    payload = files.load(path)
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise CromssError(f"{path}: no state_dict: not a model file of cromss or CromSS")
    card = payload.get("card")
    if isinstance(card, dict) and "task" in card:
        predictor = _finetuned(path, card)
    elif isinstance(payload.get("settings"), dict):
        module, settings = load_model(path)
        predictor = _fusion_predictor(module, "pretrained", settings, path)
    elif any(key.startswith("net.") for key in state):
        predictor = _released(path, state)
    else:
        raise CromssError(f"{path}: neither a fine-tuned model (card with a task), a pretrained "
                          f"model (settings) nor a released CromSS checkpoint (net.* weights); "
                          f"an encoder file alone cannot make a map")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return predictor.to(device)
