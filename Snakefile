# CromSS: cross-modal pretraining with noisy labels, from raw data to the paper's tables.
#   snakemake --cores all results/tables/table3.csv     # one table
#   snakemake --cores all                               # every table, then:
#   snakemake --report results/report.html
#   snakemake --cores all noise_study                   # optional: the label-noise study
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/maps_common.smk"
include: "workflow/rules/noise_study_common.smk"
include: "workflow/rules/release.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/transfer.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/maps.smk"
include: "workflow/rules/noise_study.smk"
include: "workflow/rules/stages.smk"


rule all:
    default_target: True
    input:
        TABLES,
        FIGURES,
        MAPS_OUT,
        MAP_FIGURES,
