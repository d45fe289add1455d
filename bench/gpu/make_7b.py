#!/usr/bin/env python3
"""Writes a random-weight Llama-2-7B-shaped checkpoint (bf16 safetensors, sharded) for issue 4's scale
check: 32 layers, hidden 4096, MLP 11008, 32 heads, vocabulary 32000, untied head (6.74 B parameters).
The tokenizer files are copied from a small bundled model; its ids are all below 32000."""
import argparse, os, shutil, time
import torch
from transformers import LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--tokenizer-from", default="models/llama-12L")
ap.add_argument("--layers", type=int, default=32)
a = ap.parse_args()

t0 = time.time()
cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=a.layers, num_attention_heads=32,
                  num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5,
                  tie_word_embeddings=False)
torch.manual_seed(0)
torch.set_default_dtype(torch.bfloat16)
with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
    model = LlamaForCausalLM(cfg)
n = sum(p.numel() for p in model.parameters())
model.save_pretrained(a.out, safe_serialization=True, max_shard_size="4GB")
for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model"):
    p = os.path.join(a.tokenizer_from, f)
    if os.path.exists(p):
        shutil.copy(p, a.out)
print(f"{a.out}: {n / 1e9:.2f} B parameters, written in {time.time() - t0:.0f} s")
