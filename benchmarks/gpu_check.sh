#!/usr/bin/env bash
# One prepared check for a lent GPU (H100 / H200): training throughput of a Qwen2-VL-2B-sized
# embedder, randomly initialised (no weights, no network), bf16, gradient checkpointing, SDPA
# (flash-attention 2 when installed), LoRA r8 on the language model, one batch of mixed
# image / video / text pairs per step through the real processor, M-RoPE and MAMCL path.
# Prints pairs/s, peak GPU memory and MFU. Finishes in well under 5 minutes.
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --batch 32      # fewer pairs per step
#   bash benchmarks/gpu_check.sh --smoke         # tiny sizes on CPU: checks the script itself
#
# It needs: python3 with torch (CUDA), transformers>=5, peft, tokenizers, safetensors,
# torchvision, pillow, numpy, pyarrow. It checks them first and says what is missing.
set -u
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "== gpu_check: $(date -u +%FT%TZ) python=$PY"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
  echo "nvidia-smi: not found"
fi

"$PY" - "$@" <<'PYEOF'
import importlib, sys
need = {"torch": "torch", "transformers": "transformers", "peft": "peft", "tokenizers": "tokenizers",
        "safetensors": "safetensors", "torchvision": "torchvision", "PIL": "pillow",
        "numpy": "numpy", "pyarrow": "pyarrow"}
missing = []
for module, package in need.items():
    try:
        m = importlib.import_module(module)
        print(f"  {module:<13} {getattr(m, '__version__', '?')}")
    except Exception as error:  # noqa: BLE001
        missing.append(package)
        print(f"  {module:<13} MISSING ({type(error).__name__}: {error})")
if missing:
    print(f"MISSING packages: {' '.join(missing)}  ->  pip install {' '.join(missing)}")
    sys.exit(2)
import torch, transformers
if int(transformers.__version__.split(".")[0]) < 5:
    print(f"transformers {transformers.__version__} is too old: this code needs >= 5")
    sys.exit(2)
if "--smoke" not in sys.argv and not torch.cuda.is_available():
    print("no CUDA device visible to torch (torch.version.cuda =", torch.version.cuda, ")")
    sys.exit(3)
try:
    import flash_attn  # noqa: F401
    print("  flash_attn    present")
except Exception:  # noqa: BLE001
    print("  flash_attn    absent (SDPA is used)")
PYEOF
rc=$?
if [ $rc -ne 0 ]; then exit $rc; fi

timeout "${GPU_CHECK_TIMEOUT:-270}" "$PY" - "$@" <<'PYEOF'
import argparse, math, statistics, sys, time

import numpy as np
import torch
from PIL import Image

from train.backbones.base import Loaded
from train.backbones.qwen2vl import Qwen2VLBackbone
from train.backbones.tiny import build_config, build_tokenizer
from train.config import BackboneConfig, MediaConfig, StageConfig, TemplateConfig
from train.gradcache import contrastive_step
from train.template import EmbedItem
from train.trainer import PreparedBatch, _loss_closure

parser = argparse.ArgumentParser()
parser.add_argument("--batch", type=int, default=64, help="pairs per step (UNITE: 64 per GPU)")
parser.add_argument("--steps", type=int, default=8)
parser.add_argument("--warmup", type=int, default=3)
parser.add_argument("--loss", default="mamcl")
parser.add_argument("--smoke", action="store_true")
args = parser.parse_args()

smoke = args.smoke
device = torch.device("cpu" if smoke else "cuda")
if smoke:
    torch.set_num_threads(1)
    args.batch, args.steps, args.warmup = 6, 2, 1
    sizes = dict(tiny_hidden=64, tiny_layers=2, tiny_heads=4, tiny_kv_heads=2, tiny_vision_depth=2,
                 tiny_vision_dim=32, tiny_vision_heads=2, tiny_vision_mlp_ratio=2, tiny_vocab=1024)
    media = MediaConfig(min_pixels=3136, max_pixels=3136, max_frame_pixels=3136, min_frames=2, max_frames=2)
else:
    # Qwen2-VL-2B: LM 1536 x 28 layers (12 heads, 2 KV), MLP 8960, vocab 151936; ViT 1280 x 32.
    sizes = dict(tiny_hidden=1536, tiny_layers=28, tiny_heads=12, tiny_kv_heads=2,
                 tiny_intermediate=8960, tiny_vision_depth=32, tiny_vision_dim=1280,
                 tiny_vision_heads=16, tiny_vision_mlp_ratio=4, tiny_vocab=151936)
    media = MediaConfig()  # UNITE: images 256..1280 x 28 x 28 pixels, frames <= 240 x 320
try:
    import flash_attn  # noqa: F401
    attn = "flash_attention_2"
except Exception:  # noqa: BLE001
    attn = "sdpa"
backbone_config = BackboneConfig(kind="tiny-qwen2-vl", precision="fp32" if smoke else "bf16",
                                 gradient_checkpointing=True, attn_implementation=attn, **sizes)

from transformers import Qwen2VLForConditionalGeneration

started = time.perf_counter()
tokenizer = build_tokenizer(1024)
hf_config = build_config(backbone_config, tokenizer)
hf_config._attn_implementation = attn
if not smoke:
    torch.set_default_dtype(torch.bfloat16)
with torch.device(device):
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(hf_config)
torch.set_default_dtype(torch.float32)
backbone = Qwen2VLBackbone(backbone_config, media, TemplateConfig(), device=device,
                           max_length=2048, model=model, tokenizer=tokenizer)
torch.manual_seed(0)
backbone.add_lora(r=8, alpha=16, dropout=0.05)
backbone.train(True)
lm = model.model.language_model
n_lm = sum(p.numel() for n, p in lm.named_parameters() if "embed_tokens" not in n and "lora_" not in n)
n_vis = sum(p.numel() for p in model.model.visual.parameters())
n_lora = sum(p.numel() for _, p in backbone.trainable_parameters())
print(f"== model: LM {n_lm / 1e9:.2f}B (non-embedding), vision {n_vis / 1e9:.2f}B, LoRA {n_lora / 1e6:.1f}M "
      f"trainable, attention {attn}, built in {time.perf_counter() - started:.1f} s")

rng = np.random.default_rng(0)
words = ("a man woman dog cat car street field water city night people playing running red "
         "blue small large video photo of the on in with near").split()


def sentence(n=24):
    return " ".join(rng.choice(words, n))


def image():
    side = 56 if smoke else 448
    return Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8))


def frames():
    t, h, w = (2, 56, 56) if smoke else (8, 240, 320)
    return rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)


def make_batch(b):
    queries, positives = [], []
    for i in range(b):
        kind = i % 4
        if kind == 0:    # t2i
            queries.append(Loaded(EmbedItem(text=sentence()), [], None))
            positives.append(Loaded(EmbedItem(images=("x",)), [image()], None))
        elif kind == 1:  # t2v
            queries.append(Loaded(EmbedItem(text=sentence()), [], None))
            positives.append(Loaded(EmbedItem(video="x"), [], frames()))
        elif kind == 2:  # it2t (instruction)
            queries.append(Loaded(EmbedItem(text=sentence(12), images=("x",), instruction="Answer:"), [image()], None))
            positives.append(Loaded(EmbedItem(text=sentence(6)), [], None))
        else:            # t2t
            queries.append(Loaded(EmbedItem(text=sentence(40)), [], None))
            positives.append(Loaded(EmbedItem(text=sentence(60)), [], None))
    q = backbone.collate(queries, use_instruction=True)
    c = backbone.collate(positives, use_instruction=True)
    return PreparedBatch(step=0, query_chunks=[q], candidate_chunks=[c],
                         positive_modalities=[x.item.modality for x in positives],
                         negative_modalities=[], skipped=0)


def counts(batch):
    tokens, seq_sq, patches, patch_sq = 0, 0, 0, 0
    for chunk in batch.query_chunks + batch.candidate_chunks:
        lengths = chunk["attention_mask"].sum(-1)
        tokens += int(lengths.sum())
        seq_sq += int((lengths.double() ** 2).sum())
        for key in ("image_grid_thw", "video_grid_thw"):
            if key in chunk:
                per = chunk[key].prod(-1)
                patches += int(per.sum())
                patch_sq += int((per.double() ** 2).sum())
    return tokens, seq_sq, patches, patch_sq


stage = StageConfig(name="check", data="check", loss=args.loss)
params = [p for _, p in backbone.trainable_parameters()]
optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.0)


def run(b):
    batch = make_batch(b)
    times, losses = [], []
    for step in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = contrastive_step(backbone, batch.query_chunks, batch.candidate_chunks,
                                _loss_closure(stage, batch, 0.03), cached=False)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
            losses.append(float(loss))
    return batch, times, losses


batch_size = args.batch
while True:
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        batch, times, losses = run(batch_size)
        break
    except torch.cuda.OutOfMemoryError:
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        if batch_size <= 4:
            raise
        print(f"   out of memory at {batch_size} pairs per step; trying {batch_size // 2}")
        batch_size //= 2

step_s = statistics.median(times)
tokens, seq_sq, patches, patch_sq = counts(batch)
L, d = hf_config.text_config.num_hidden_layers, hf_config.text_config.hidden_size
Lv, dv = hf_config.vision_config.depth, hf_config.vision_config.embed_dim
# Model FLOPs as MFU is usually quoted (PaLM appendix B): 6 N per token + attention.
model_flops = 6 * (n_lm * tokens + n_vis * patches) + 12 * (L * d * seq_sq + Lv * dv * patch_sq)
name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
peaks = {"H100": 989e12, "H200": 989e12, "H20": 148e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}
peak = next((v for k, v in peaks.items() if k in name), None)
memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
print(f"== batch: {batch_size} pairs ({2 * batch_size} sequences: t2i, t2v, it2t, t2t), "
      f"{tokens} LM tokens, {patches} vision patches per step; loss {args.loss}")
print(f"== step: median {step_s * 1e3:.0f} ms over {len(times)} steps (min {min(times) * 1e3:.0f}, "
      f"max {max(times) * 1e3:.0f}); losses {', '.join(f'{x:.3f}' for x in losses[:3])} ...")
print(f"RESULT pairs/s            {batch_size / step_s:.1f}")
print(f"RESULT sequences/s        {2 * batch_size / step_s:.1f}")
print(f"RESULT LM tokens/s        {tokens / step_s:.0f}")
print(f"RESULT peak GPU memory    {memory:.1f} GiB")
print(f"RESULT model TFLOP/s      {model_flops / step_s / 1e12:.1f}")
if peak:
    print(f"RESULT MFU                {100 * model_flops / step_s / peak:.1f}% of {peak / 1e12:.0f} "
          f"TFLOP/s bf16 dense ({name}); 6N+attention convention. LoRA skips the frozen weights' "
          f"gradients (about -1/3) while checkpointing recomputes the forward (+1/6), so the "
          f"hardware does about {100 * model_flops * (5 / 6) / step_s / peak:.1f}%")
else:
    print(f"RESULT MFU                n/a (unknown peak for {name})")
print(f"== total {time.perf_counter() - started:.0f} s")
PYEOF
rc=$?
if [ $rc -eq 124 ]; then echo "gpu_check: timed out"; fi
exit $rc
