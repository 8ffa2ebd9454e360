"""Maps of whole scenes: tiled, blended inference of any cromss model on georeferenced rasters.

- :mod:`cromss.predict.scene` finds the bands of a scene in its GeoTIFFs and reads windows of them
  on one 10 m grid;
- :mod:`cromss.predict.predictor` turns any model file the workflow makes (fine-tuned, pretrained,
  released CromSS checkpoint) into one probability predictor with its bands and normalisation;
- :mod:`cromss.predict.tiling` lays overlapping tiles with smooth blending weights and runs the
  predictor strip by strip (memory bounded by one strip of tiles);
- :mod:`cromss.predict.output` writes the class map and the confidence as Cloud-Optimized GeoTIFFs
  (and optionally the probabilities as Zarr), atomically.
"""
