#!/usr/bin/env bash
# Table 5: TAM w/o TSC (CTM, image + motion + audio), TAM† w/o TSC (CTM on the Dual method's features),
# and TAM (fine-tuned from TSC pre-training), on VE-8 (10 splits) and YF-6. Other methods' numbers are
# the paper's, shown in their own "published" columns by `tam collect --paper`.
#   bash runs/table5.sh | NGPU=4 bash runs/table5.sh | DRY=1 bash runs/table5.sh
#   DUAL_STORE_VE8=... DUAL_STORE_YF6=...   feature stores of action/scene/object features (e.g. made with
#                                           `tam dataset import-features`); the TAM† rows are skipped without them
#   PRETRAINED=ckpt INIT_KEY=section.key    a TSC-pre-trained checkpoint and the engine's config key that loads
#                                           it for fine-tuning; the TAM row is skipped without them
source "$(dirname "$0")/common.sh"
for ds in ve8 yf6; do
    video_dataset "$ds" ctm-image-motion-audio
    store_var="DUAL_STORE_${ds^^}"
    if [ -n "${!store_var:-}" ]; then
        video_dataset "$ds" ctm-dual-features "${!store_var}"
    else
        echo "skipping TAM† w/o TSC on $ds: set $store_var to a store of the Dual method's features"
    fi
done
if [ -n "${PRETRAINED:-}" ] && [ -n "${INIT_KEY:-}" ]; then
    for k in $SPLITS; do
        train configs/ve8/ctm-image-motion-audio.yaml "$OUT/ve8-tsc/ctm-image-motion-audio/split$k" \
            data.store="$DATA/ve8/features" data.labels="$DATA/ve8/splits/ve8_split$k.csv" \
            "$INIT_KEY=$PRETRAINED"
    done
    train configs/yf6/ctm-image-motion-audio.yaml "$OUT/yf6-tsc/ctm-image-motion-audio/public" \
        data.store="$DATA/yf6/features" data.labels="$DATA/yf6/yf6_public.csv" \
        "$INIT_KEY=$PRETRAINED"
else
    echo "skipping TAM (with TSC pre-training): set PRETRAINED and INIT_KEY"
fi
collect 5 "$OUT/ve8" "$OUT/yf6" "$OUT/ve8-tsc" "$OUT/yf6-tsc"
