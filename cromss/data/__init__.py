"""The data stage: synthetic world, readers of the real on-disk layouts, Zarr stores."""
