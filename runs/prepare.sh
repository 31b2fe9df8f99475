#!/usr/bin/env bash
# Labels CSVs for every table, from the datasets' own files. Edit the paths below to where yours are.
# Feature stores (data/<dataset>/features) are made by the feature extraction, with the same video ids
# (docs/datasets.md); `tam dataset check LABELS --store STORE` counts the ones missing.
#   VE8_ROOT=... YF6_LISTS=... LIRIS=... ME15=... ME16=... bash runs/prepare.sh
set -euo pipefail
DATA=${DATA:-data}
if [ -n "${VE8_ROOT:-}" ]; then  # <root>/<Class>/<video>: 10 seeded 2/3-1/3 splits
    tam dataset splits ve8 --root "$VE8_ROOT" --out "$DATA/ve8/splits" --n 10 --seed 0
fi
if [ -n "${YF6_LISTS:-}" ]; then  # folder with the public split lists
    tam dataset yf6 --train "$YF6_LISTS/train.txt" --test "$YF6_LISTS/test.txt" --out "$DATA/yf6"
fi
if [ -n "${ME15:-}" ]; then  # MediaEval 2015: labels (id name valenceClass arousalClass) and dev/test lists
    tam dataset mediaeval2015 --labels "${ME15_LABELS:-$ME15/ACCEDEaffect.txt}" --dev "$ME15/shots-devset-nl.txt" \
        --test "$ME15/shots-testset-nl.txt" --out "$DATA/me15"
fi
if [ -n "${LIRIS:-}" ] && [ -n "${ME16:-}" ]; then  # MediaEval 2016: ranked clips + global test truth
    tam dataset mediaeval2016 --ranking "$LIRIS/ACCEDEranking.txt" \
        --test-truth "$ME16/MEDIAEVAL16-Global_prediction.txt" --out "$DATA/me16"
fi
