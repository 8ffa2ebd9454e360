#!/usr/bin/env bash
# Run by Snakemake inside the conda env it built from environment.yml (--sdm conda): install the
# cromss package from the workflow's checkout, editable, without touching the dependencies.
# CROMSS_SOURCE is the checkout's root (workflow/rules/common.smk sets it from the Snakefile's
# folder), so this works whatever the working directory is.
set -euo pipefail
source="${CROMSS_SOURCE:?CROMSS_SOURCE must name the cromss checkout (set by the Snakefile)}"
python -m pip install --quiet --no-deps --no-build-isolation -e "$source"
python -c "import cromss, sys; sys.stdout.write(f'cromss {cromss.__version__} from {cromss.__file__}\n')"
