#!/usr/bin/env bash
# Table 4: pre-training tasks (no pre-training, EWP only, ATP only, λw:λt = 1:2, 2:1, 1:1), each fine-tuned
# on VE-8 (10 splits) and YF-6 (public split) with the paper's fine-tuning (fusion lr 1e-5, head 1e-4, 50 epochs).
#   TSC_STORE=feats/ TSC_CORPUS=corpus/ bash runs/table4.sh     # after runs/prepare.sh and `tam comments prepare`
#   NGPU=4 ... bash runs/table4.sh | DRY=1 bash runs/table4.sh
#   TSC_STORE   feature store of the video-TSC corpus videos (same encoders as the VE-8 / YF-6 stores)
#   TSC_CORPUS  folder made by `tam comments prepare ... --masking emotion`
# Re-running resumes: finished pre-training and fine-tuning runs are skipped. Collected by
# `tam pretrain table 4` into $OUT/table4.md.
source "$(dirname "$0")/common.sh"
TSC_STORE=${TSC_STORE:-$DATA/tsc/features}
TSC_CORPUS=${TSC_CORPUS:-$DATA/tsc/corpus-emotion}

# pretrain CONFIG RUN_DIR CORPUS: one pre-training run (torchrun with NGPU > 1); skipped when finished.
pretrain() {
    local config=$1 run_dir=$2 corpus=$3 cmd
    if [ -f "$run_dir/pretrained.json" ]; then echo "done already: $run_dir"; return 0; fi
    if [ "$NGPU" -gt 1 ]; then cmd=(torchrun --standalone --nproc_per_node="$NGPU" "$(command -v tam)" pretrain run)
    else cmd=(tam pretrain run); fi
    cmd+=(--config "$config" --store "$TSC_STORE" --corpus "$corpus" --run-dir "$run_dir")
    echo "+ ${cmd[*]}"
    if [ -z "${DRY:-}" ]; then "${cmd[@]}"; fi
}

# finetune ROW [CHECKPOINT]: VE-8 splits and YF-6 into $OUT/table$TABLE/ROW/<dataset>/...
finetune() {
    local row=$1 ckpt=${2:-} init=()
    [ -n "$ckpt" ] && init=(train.init_from="$ckpt" optim.fusion_lr=1e-5 optim.lr=1e-4 optim.epochs=50)
    for k in $SPLITS; do
        train configs/ve8/ctm-image-motion-audio.yaml "$OUT/table$TABLE/$row/ve8/split$k" \
            data.store="$DATA/ve8/features" data.labels="$DATA/ve8/splits/ve8_split$k.csv" ${init[@]+"${init[@]}"}
    done
    train configs/yf6/ctm-image-motion-audio.yaml "$OUT/table$TABLE/$row/yf6/public" \
        data.store="$DATA/yf6/features" data.labels="$DATA/yf6/yf6_public.csv" ${init[@]+"${init[@]}"}
}

# collect_pretrain_table: the paper's layout from whatever has been run.
collect_pretrain_table() {
    echo "+ tam pretrain table $TABLE --runs $OUT/table$TABLE --out $OUT/table$TABLE.md"
    if [ -z "${DRY:-}" ]; then tam pretrain table "$TABLE" --runs "$OUT/table$TABLE" --out "$OUT/table$TABLE.md"; fi
}

if [ -z "${TSC_TABLE_FUNCTIONS_ONLY:-}" ]; then
    TABLE=4
    finetune none
    for row in ewp-only atp-only w1t2 w2t1; do
        pretrain "configs/pretrain/$row.yaml" "$OUT/pretrain/$row" "$TSC_CORPUS"
        finetune "$row" "$OUT/pretrain/$row/pretrained.safetensors"
    done
    pretrain configs/pretrain/paper.yaml "$OUT/pretrain/emotion" "$TSC_CORPUS"
    finetune w1t1 "$OUT/pretrain/emotion/pretrained.safetensors"
    collect_pretrain_table
fi
