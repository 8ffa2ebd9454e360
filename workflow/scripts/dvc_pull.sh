#!/usr/bin/env bash
# Restore the workflow's results from the DVC remote and make Snakemake trust them.
#
#   workflow/scripts/dvc_pull.sh [--stage STAGE]... [SNAKEMAKE TARGETS/OPTIONS...]
#
# Without --stage every stage's outputs are pulled; with it only those stages' (e.g. --stage
# pretraining for the weights; `dvc dag` lists the stages). `dvc pull` writes files in no
# particular order, so their modification times no longer follow the DAG and Snakemake would
# rerun jobs; a fresh clone also has no .snakemake/metadata, so later config or code changes would
# trigger nothing. When the checkout's code and config are the ones recorded in dvc.lock for the
# pulled stages (`dvc status` clean), the pulled files are exactly what Snakemake would make, and
# `snakemake --touch --forceall` sets their times in DAG order and records provenance for every
# job, without running any (outputs of stages not pulled are skipped). Otherwise the files are
# left as pulled and this script fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DVC_NO_ANALYTICS=1

stages=()
while [[ $# -gt 1 && "$1" == "--stage" ]]; do
    stages+=("$2")
    shift 2
done

if ! dvc pull "${stages[@]}"; then
    echo "dvc_pull.sh: dvc pull from the remote failed (DVC's reason above): check its" \
         "credentials, bucket and endpoint ('dvc remote list', 'dvc remote modify --local');" \
         "files already in results/ were left as they were and nothing was marked up to date" >&2
    exit 1
fi
# the pulled stages' inputs that belong to stages not pulled are missing: not a difference
status="$(dvc status --json "${stages[@]}" | python3 -c '
import json, sys
status = {stage: [change for change in changes
                  if set(change) != {"changed deps"}
                  or any(value != "deleted" for value in change["changed deps"].values())]
          for stage, changes in json.load(sys.stdin).items()}
print(json.dumps({stage: changes for stage, changes in status.items() if changes}))')"
if [[ "$status" != "{}" ]]; then
    echo "dvc_pull.sh: the checkout differs from dvc.lock, so the pulled results are not marked" \
         "up to date; run snakemake to update them:" >&2
    echo "$status" >&2
    exit 1
fi
snakemake --touch --forceall --cores 1 "$@"
