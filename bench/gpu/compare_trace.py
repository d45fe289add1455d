"""Relative error ||ours - golden|| / ||golden|| for every tensor of a golden file; prints one line per
check and exits 1 if any exceeds its tolerance (logits/loss/hidden: --tol, gradients: --grad-tol)."""
import sys, argparse
import numpy as np
from safetensors.numpy import load_file
ap = argparse.ArgumentParser()
ap.add_argument("golden"); ap.add_argument("ours"); ap.add_argument("--tol", type=float, default=1e-5)
ap.add_argument("--grad-tol", type=float, default=1e-4); ap.add_argument("--label", default="")
a = ap.parse_args()
g = load_file(a.golden); o = load_file(a.ours)
worst = {"fwd": 0.0, "grad": 0.0}; bad = []
for k, ref in g.items():
    if k == "input_ids": continue
    if k not in o: bad.append(f"missing {k}"); continue
    x = o[k].astype(np.float64); r = ref.astype(np.float64)
    if x.shape != r.shape: bad.append(f"{k}: shape {x.shape} vs {r.shape}"); continue
    if np.isnan(x).any(): bad.append(f"{k}: NaN"); continue
    nr = np.linalg.norm(r)
    if nr < 1e-6:  # analytically-zero gradient (e.g. OPT's k_proj.bias): compare absolute
        e = float(np.abs(x).max()); kind = "grad" if k.startswith("grad.") else "fwd"
        if e > 1e-5: bad.append(f"{k}: expected ~0, max |x| {e:.2e}")
        continue
    e = float(np.linalg.norm(x - r) / nr); kind = "grad" if k.startswith("grad.") else "fwd"
    worst[kind] = max(worst[kind], e)
    if e > (a.grad_tol if kind == "grad" else a.tol): bad.append(f"{k}: rel err {e:.2e}")
print(f"{a.label:40s} worst fwd {worst['fwd']:.2e}  worst grad {worst['grad']:.2e}  {'OK' if not bad else 'FAIL: ' + '; '.join(bad[:4])}")
sys.exit(1 if bad else 0)
