#!/usr/bin/env bash
# Download the Python 3.12 wheels that benchmarks/bench_gpu.py needs and the device image lacks
# (it has torch, timm, torchvision, xarray, scipy, numpy, pandas, pyyaml, attrs, click, tqdm,
# huggingface-hub, safetensors, pillow, certifi, pyparsing, packaging, typing-extensions) into the
# git-ignored folder .whl/ (about 51 MiB; the tree that travels to the device is at most 64 MiB).
# The versions are those of the project's environment (pip list, 2026-12-04). Usage, from the
# repository root, with network access:  bash benchmarks/gpu_wheels.sh
set -euo pipefail
dest=${1:-.whl}
python=${PYTHON:-python3}
wheels=(
  segmentation_models_pytorch==0.6.0
  zarr==3.1.6 donfig==0.8.1.post1 google-crc32c==1.9.0 numcodecs==0.16.6 zarrs==0.2.3
  rasterio==1.4.4 affine==3.0.1 cligj==0.7.2 click-plugins==1.1.1.2
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
)
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
mkdir -p "$dest"
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d "$dest" "${wheels[@]}"
size=$(du -sm "$dest" | cut -f1)
echo "$dest: $(ls "$dest" | wc -l) wheels, ${size} MiB"
if [ "$size" -gt 56 ]; then
  echo "error: $dest is ${size} MiB; with the repository it would not fit the 64 MiB tree" >&2
  exit 1
fi
