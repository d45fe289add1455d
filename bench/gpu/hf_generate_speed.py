"""Generation throughput of transformers on the same protocol as `eldr speed --generate` (DESIGN.md §6):
batch 64, prompt 64 random ids, exactly 128 new tokens, greedy, KV cache, bf16; host clock around synchronised
runs, 1 warm-up then 5 timed. Prints one JSON line. Usage: hf_generate_speed.py MODEL_DIR [--batch B --prompt P --new N]"""
import argparse, json, time
import torch
from transformers import AutoModelForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--prompt", type=int, default=64)
ap.add_argument("--new", type=int, default=128)
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--warmup", type=int, default=1)
a = ap.parse_args()
m = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16).cuda().eval()
g = torch.Generator(device="cpu").manual_seed(0)
ids = torch.randint(0, m.config.vocab_size, (a.batch, a.prompt), generator=g).cuda()
ms = []
with torch.inference_mode():
    for i in range(a.warmup + a.runs):
        torch.cuda.synchronize(); t = time.perf_counter()
        out = m.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=a.new, min_new_tokens=a.new,
                         do_sample=False, use_cache=True, pad_token_id=0)
        torch.cuda.synchronize()
        if i >= a.warmup: ms.append((time.perf_counter() - t) * 1000)
        assert out.shape[1] == a.prompt + a.new
ms.sort()
med = ms[len(ms) // 2] if len(ms) % 2 else (ms[len(ms) // 2 - 1] + ms[len(ms) // 2]) / 2
print(json.dumps({"model": a.model, "batch": a.batch, "prompt": a.prompt, "new_tokens": a.new, "median_ms": med,
                  "tokens_per_second": a.batch * a.new / (med / 1000)}))
