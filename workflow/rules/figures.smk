# Figures for `snakemake --report`.

FIGURES = []
