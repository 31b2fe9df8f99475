#!/usr/bin/env bash
# Table 6: LIRIS-ACCEDE. MediaEval 2015 (valence class and arousal class: two classification runs,
# accuracy) and MediaEval 2016 (valence/arousal regression, MSE and PCC; model selection by PCC).
# Batch 16, 20 epochs, T = 16 (configs/mediaeval2015, configs/mediaeval2016).
#   bash runs/table6.sh | NGPU=4 bash runs/table6.sh | DRY=1 bash runs/table6.sh
#   PRETRAINED=ckpt INIT_KEY=section.key    also run TAM fine-tuned from TSC pre-training
source "$(dirname "$0")/common.sh"
STORE=${LIRIS_STORE:-$DATA/liris/features}
run_all() {  # run_all OUT_SUBDIR [section.key=value ...]
    local sub=$1
    shift
    for task in valence arousal; do
        train "configs/mediaeval2015/$task-ctm.yaml" "$OUT/$sub/mediaeval2015-$task" \
            data.store="$STORE" data.labels="$DATA/me15/mediaeval2015_$task.csv" "$@"
    done
    train configs/mediaeval2016/ctm.yaml "$OUT/$sub/mediaeval2016" \
        data.store="$STORE" data.labels="$DATA/me16/mediaeval2016.csv" "$@"
}
run_all liris
if [ -n "${PRETRAINED:-}" ] && [ -n "${INIT_KEY:-}" ]; then
    run_all liris-tsc "$INIT_KEY=$PRETRAINED"
else
    echo "skipping TAM (with TSC pre-training): set PRETRAINED and INIT_KEY"
fi
collect 6 "$OUT/liris" "$OUT/liris-tsc"
