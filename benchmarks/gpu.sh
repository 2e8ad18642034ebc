#!/usr/bin/env bash
# The first GPU the project gets: one script, run as it is, under 10 minutes, one table.
#
#   bash benchmarks/gpu.sh                 # on a machine with 1 or more NVIDIA GPUs, mlmtune installed
#   GPU_SH_DRY=1 bash benchmarks/gpu.sh    # the same plumbing on a CPU (tiny step counts; checks the script)
#
# What it measures (bbc-news, blocks of 128, batch 32 per process, bf16 where the GPU has it, else fp16):
#   mlmtune train for minilm and a bert-base shape (random weights, minilm's vocabulary), without and
#   with --compile, on 1 GPU and on all GPUs (torchrun); tokens/s (all processes, the median of the
#   logged windows after the first, so compilation and warm-up are left out) and MFU (model FLOPs:
#   6 x parameters of the encoder and the head at the masked positions, plus attention, per token,
#   against the GPU's dense bf16/fp16 peak; PEAK_TFLOPS=... if the name is not in gpu_table.py);
#   beside it the seed's loop and mlmtune's step in one process (benchmarks/train_throughput.py).
# Each run has its own time limit (RUN_LIMIT seconds, COMPILE_LIMIT with --compile), and the whole script
# TOTAL_LIMIT (570 s): a run that hangs costs a row, not the job, and rows past the limit say "skipped".
# Knobs: STEPS (mlmtune steps per run), RUN_LIMIT, COMPILE_LIMIT, TOTAL_LIMIT, BATCH, DATA (bbc-news),
# WORK (a folder kept), PY.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PY:-python}"
DRY="${GPU_SH_DRY:-0}"
if [[ "$DRY" == 1 ]]; then
    STEPS="${STEPS:-6}"; RUN_LIMIT="${RUN_LIMIT:-300}"; BATCH="${BATCH:-4}"; NGPU=2; LOG_EVERY=2
    SEED_ARGS=(--blocks 1 --steps 2 --warmup 1); EVAL_SIZE=8
else
    if ! command -v nvidia-smi >/dev/null || ! NGPU="$(nvidia-smi -L | grep -c '^GPU')" || [[ "$NGPU" -lt 1 ]]; then
        echo "error: no NVIDIA GPU here (nvidia-smi lists none): run on a GPU machine, or GPU_SH_DRY=1 to check the script" >&2
        exit 2
    fi
    STEPS="${STEPS:-120}"; RUN_LIMIT="${RUN_LIMIT:-80}"; BATCH="${BATCH:-32}"; LOG_EVERY=10
    SEED_ARGS=(--blocks 3 --steps 10 --warmup 5); EVAL_SIZE=64
fi
DATA="${DATA:-bbc-news}"
COMPILE_LIMIT="${COMPILE_LIMIT:-$((RUN_LIMIT + 60))}"
TOTAL_LIMIT="${TOTAL_LIMIT:-570}"
SECONDS=0
limit() {  # limit SECONDS_WANTED: what is left of TOTAL_LIMIT, at most SECONDS_WANTED (0: no time left)
    local left=$((TOTAL_LIMIT - SECONDS))
    if [[ "$left" -lt 20 ]]; then echo 0; elif [[ "$left" -lt "$1" ]]; then echo "$left"; else echo "$1"; fi
}
WORK="${WORK:-$(mktemp -d -t mlmtune-gpu-XXXX)}"
mkdir -p "$WORK"
export MLMTUNE_CACHE="$WORK/cache"  # bbc-news is tokenized once, by the first run
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "gpu.sh: $NGPU GPU(s), $STEPS steps per run, batch $BATCH per process, work folder $WORK" >&2

# a bert-base shape with minilm's vocabulary (random weights: throughput only)
if [[ ! -f "$WORK/bert-base/config.json" ]]; then
    "$PY" - "$WORK/bert-base" "$DRY" <<'EOF' || { echo "error: could not build the bert-base shape" >&2; exit 1; }
import sys
from transformers import BertConfig, BertForMaskedLM
from mlmtune.model.tokenizer import load_tokenizer
tok = load_tokenizer("minilm")
tiny = sys.argv[2] == "1"  # the dry run checks the plumbing, not the shape
config = BertConfig(vocab_size=len(tok), hidden_size=64 if tiny else 768, num_hidden_layers=2 if tiny else 12,
                    num_attention_heads=2 if tiny else 12, intermediate_size=128 if tiny else 3072,
                    max_position_embeddings=512, pad_token_id=tok.pad_token_id)
BertForMaskedLM(config).save_pretrained(sys.argv[1])
tok.save_pretrained(sys.argv[1])
EOF
fi

launch() {  # launch SECONDS PROCESSES ARGS...: mlmtune itself, or under torchrun for more than one process
    local t="$1" n="$2"; shift 2
    if [[ "$n" -gt 1 ]]; then
        timeout -k 10 "$t" "$PY" -m torch.distributed.run --standalone --nproc_per_node "$n" -m mlmtune train "$@"
    else
        timeout -k 10 "$t" "$PY" -m mlmtune train "$@"
    fi
}

ROWS=()
for model in minilm bert-base; do
    path="$model"; [[ "$model" == bert-base ]] && path="$WORK/bert-base"
    for compile in no yes; do
        for n in 1 "$NGPU"; do
            [[ "$compile" == yes && "$DRY" == 1 ]] && continue  # a CPU compile takes minutes
            name="$model-compile_$compile-gpus_$n"
            out="$WORK/runs/$name"
            args=(--model "$path" --data "$DATA" --output-dir "$out" --overwrite --max-steps "$STEPS"
                  --batch-size "$BATCH" --chunk-size 128 --log-every "$LOG_EVERY" --eval-size "$EVAL_SIZE"
                  --precision auto --no-report --seed 0)
            [[ "$compile" == yes ]] && args+=(--compile)
            echo "gpu.sh: $name" >&2
            t="$(limit "$([[ "$compile" == yes ]] && echo "$COMPILE_LIMIT" || echo "$RUN_LIMIT")")"
            if [[ "$t" == 0 ]]; then status=skipped
            elif launch "$t" "$n" "${args[@]}" >"$WORK/$name.log" 2>&1; then status=ok; else status="failed($?)"; fi
            ROWS+=("$name|$model|$compile|$n|$status|$out")
            [[ "$n" == "$NGPU" ]] && break  # one GPU: 1 and all are the same row
        done
    done
done

for shape in minilm bert-base; do
    echo "gpu.sh: seed loop, $shape" >&2
    if [[ "$DRY" == 1 && "$shape" == bert-base ]]; then continue; fi
    t="$(limit "$RUN_LIMIT")"
    if [[ "$t" == 0 ]]; then status=skipped
    elif timeout -k 10 "$t" "$PY" "$HERE/train_throughput.py" --shape "$shape" "${SEED_ARGS[@]}" \
            --parity-steps 0 --json >"$WORK/seed-$shape.json" 2>"$WORK/seed-$shape.log"; then status=ok
    else status="failed($?)"; fi
    ROWS+=("seed-$shape|$shape|-|1|$status|$WORK/seed-$shape.json")
done

printf '%s\n' "${ROWS[@]}" | "$PY" "$HERE/gpu_table.py" --work "$WORK"
