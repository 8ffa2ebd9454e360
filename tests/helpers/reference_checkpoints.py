"""Released-CromSS-style checkpoints, written the way the authors' code writes them.

The reference (zhu-xlab/CromSS) pretrains ``models/pl_pretrain_mm_sscom.py``'s LightningModule,
whose ``__init__(self, args)`` calls ``self.save_hyperparameters()`` and keeps the network as
``self.net``: ``Unet_midF_2branch`` (``encoder1`` for S1, ``encoder`` for S2, one ``decoder`` and
``segmentation_head``) or ``Unet_lateF_2branch`` (``model1`` S1 and ``model2`` S2 smp U-Nets).
Here a small module with that layout is trained one step by a real ``lightning.Trainer`` and saved
with ``trainer.save_checkpoint``: the file holds the full payload (``hyper_parameters`` with an
``argparse.Namespace``, optimizer, scheduler, loops and callbacks state), as the released
``weights-cromss-{13B,9B}-{midFusion,lateFusion}-epoch=199.ckpt`` do.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning
import segmentation_models_pytorch as smp
import torch
from segmentation_models_pytorch.encoders import get_encoder
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class MidFusion2Branch(nn.Module):
    """The reference's ``Unet_midF_2branch`` attribute layout."""

    def __init__(self, encoder: str, bands_1: int, bands_2: int, classes: int):
        super().__init__()
        unet = smp.Unet(encoder, encoder_weights=None, in_channels=bands_1, classes=classes,
                        decoder_channels=(32, 16, 16, 8, 8))
        self.encoder1 = unet.encoder
        self.encoder = get_encoder(encoder, in_channels=bands_2, depth=5, weights=None)
        self.decoder = unet.decoder
        self.segmentation_head = unet.segmentation_head

    def forward(self, x1, x2):
        return (self.segmentation_head(self.decoder(self.encoder1(x1))),
                self.segmentation_head(self.decoder(self.encoder(x2))))


class LateFusion2Branch(nn.Module):
    """The reference's ``Unet_lateF_2branch`` attribute layout."""

    def __init__(self, encoder: str, bands_1: int, bands_2: int, classes: int):
        super().__init__()
        self.model1, self.model2 = (
            smp.Unet(encoder, encoder_weights=None, in_channels=bands, classes=classes,
                     decoder_channels=(32, 16, 16, 8, 8)) for bands in (bands_1, bands_2))

    def forward(self, x1, x2):
        return self.model1(x1), self.model2(x2)


class PretrainModule(lightning.LightningModule):
    """``Unet_mm``'s interface: built from ``args``, ``save_hyperparameters()``, ``self.net``,
    Adam with ReduceLROnPlateau on ``v_loss``."""

    def __init__(self, args: argparse.Namespace):
        super().__init__()
        structure = MidFusion2Branch if args.fuse_type == "mid" else LateFusion2Branch
        self.net = structure(args.mt, 2, args.n_channels, args.n_classes)
        self.n_channels_1 = 2
        self.lr = args.lr
        self.save_hyperparameters()

    def forward(self, x1, x2):
        return self.net(x1, x2)

    def _loss(self, batch):
        x, y = batch
        logits = self(x[:, :self.n_channels_1], x[:, self.n_channels_1:])
        return sum(nn.functional.cross_entropy(lg, y) for lg in logits)

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("v_loss", self._loss(batch), on_epoch=True, on_step=False)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=1e-8)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "min", patience=30,
                                                               factor=0.5)
        return {"optimizer": optimizer, "lr_scheduler": scheduler, "monitor": "v_loss"}


def reference_args(fusion: str, bands: int, encoder: str) -> argparse.Namespace:
    """Arguments like the reference's ``get_args_pretrain_sscom`` produces (a subset)."""
    return argparse.Namespace(
        mt=encoder, fuse_type={"midFusion": "mid", "lateFusion": "late"}[fusion],
        n_channels=bands, n_classes=9, loss_type="cd", cl_type="ce", cl_weight=1.0, if_mask=False,
        ls=True, lsf=[0.15, 0.05], ss=True, ss_ctype="ce", ss_nep=80, ss_prop=0.5,
        ss_rm_func="exp", opt="adam", lr=0.005, schdt="rop", schd=30, batch_size=128, epochs=200,
        norm=False, experiment="ns_labels", gt_avail=False, seed=42, current_device=0,
        cls_dict={i: name for i, name in enumerate(["water", "trees", "grass", "flooded",
                                                   "crops", "shrub", "built", "bare", "snow"])},
        save_dir="/p/project/save", strategy="auto", devices=1, nodes=1)


def write_reference_checkpoint(path: Path, fusion: str, bands: int,
                               encoder: str = "resnet18") -> PretrainModule:
    """Train the module one step with Lightning and save its full checkpoint to ``path``."""
    torch.manual_seed(0)
    module = PretrainModule(reference_args(fusion, bands, encoder))
    data = TensorDataset(torch.rand(2, 2 + bands, 32, 32), torch.randint(0, 9, (2, 32, 32)))
    trainer = lightning.Trainer(
        max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=path.parent / f"{path.stem}-lightning",
        callbacks=[lightning.pytorch.callbacks.ModelCheckpoint(monitor="v_loss")])
    trainer.fit(module, DataLoader(data, batch_size=2), DataLoader(data, batch_size=2))
    trainer.save_checkpoint(path)
    return module
