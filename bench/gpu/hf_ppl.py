"""Perplexity of a checkpoint with transformers, by this repo's protocol (DESIGN.md §6): tokenize the whole
text (no special tokens added), non-overlapping windows of --seqlen, partial last window dropped,
ppl = exp(total NLL / predicted). Prints one JSON line with the figure and the tokens/s on this device."""
import sys, json, time, math, argparse
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
ap = argparse.ArgumentParser()
ap.add_argument("model"); ap.add_argument("--data", required=True); ap.add_argument("--seqlen", type=int, default=512)
ap.add_argument("--batch", type=int, default=8); ap.add_argument("--dtype", default="float32")
a = ap.parse_args()
dev = "cuda" if torch.cuda.is_available() else "cpu"
tok = AutoTokenizer.from_pretrained(a.model)
model = AutoModelForCausalLM.from_pretrained(a.model, dtype=getattr(torch, a.dtype)).to(dev).eval()
ids = tok(open(a.data, encoding="utf-8").read(), add_special_tokens=False, return_tensors="pt").input_ids[0]
n = ids.numel() // a.seqlen
win = ids[: n * a.seqlen].view(n, a.seqlen).to(dev)
nll, cnt = 0.0, 0
if dev == "cuda": torch.cuda.synchronize()
t0 = time.perf_counter()
with torch.no_grad():
    for i in range(0, n, a.batch):
        x = win[i:i + a.batch]
        logits = model(input_ids=x).logits.float()
        lp = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), reduction="sum")
        nll += float(lp); cnt += x[:, 1:].numel()
if dev == "cuda": torch.cuda.synchronize()
dt = time.perf_counter() - t0
print(json.dumps({"model": a.model, "ppl": math.exp(nll / cnt), "windows": n, "predicted": cnt, "seconds": dt,
                  "tokens_per_s": n * a.seqlen / dt, "dtype": a.dtype, "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
                  "torch": torch.__version__}))
