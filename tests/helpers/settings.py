"""Settings of tiny but complete training runs, as the CLI receives them from a config."""

PRETRAIN_SETTINGS = {
    "name": "midF", "fusion": "middle", "s2_bands": 9, "encoder": "resnet18",
    "decoder_channels": [32, 16, 16, 8, 8], "epochs": 2, "batch_size": 2, "crop": 32,
    "lr": 0.005, "weight_decay": 1e-8, "plateau_factor": 0.5, "plateau_patience": 30,
    "val_fraction": 0.25, "val_batch_size": 1, "amp": True, "seed": 42, "num_workers": 0,
    "checkpoint_every": 1,
    "flip_p": 0.5, "rotate_p": 0.2, "selection": {"enabled": True, "ramp_epochs": 5, "keep": 0.5},
    "smoothing": {"enabled": True, "prior": "spatial_temporal", "sigma": 3.0, "alpha": 0.15,
                  "beta": 0.05},
    "consistency_weight": 1.0,
}

FINETUNE_SETTINGS = {
    "epochs": 2, "cosine_epochs": 1, "lr": 0.01, "min_lr": 1e-5, "weight_decay": 1e-8,
    "batch_size": 4, "crop": {"dfc2020": 32}, "frozen_batchnorm": "update", "num_workers": 0,
    "encoder": "resnet18", "s2_bands": 13,
}
