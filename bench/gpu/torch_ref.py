"""Torch reference timings for the same shapes as CudaKernelBenchTests (bench/RESULTS.md).

Median of 20 CUDA-event timings after warm-up, bf16 inputs, fresh random data.
Prints "name<TAB>median_ms<TAB>extra" lines like the C# side.
"""
import torch
import torch.nn.functional as F


def median_ms(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def main():
    dev = "cuda"
    dt = torch.bfloat16
    print(f"device\t0\t{torch.cuda.get_device_name()}; torch {torch.__version__}; CUDA {torch.version.cuda}")
    for (B, T, H, Hkv, hd) in [(1, 2048, 32, 32, 128), (1, 2048, 32, 8, 128)]:
        q = torch.randn(B, H, T, hd, device=dev, dtype=dt, requires_grad=True)
        k = torch.randn(B, Hkv, T, hd, device=dev, dtype=dt, requires_grad=True)
        v = torch.randn(B, Hkv, T, hd, device=dev, dtype=dt, requires_grad=True)
        kw = {"enable_gqa": True} if Hkv != H else {}
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, **kw)
        dO = torch.randn_like(out)
        tag = f"B={B} T={T} H={H}/{Hkv} hd={hd} bf16"
        with torch.no_grad():
            f = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, **kw))

        def fb():
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, **kw)
            torch.autograd.grad(o, (q, k, v), dO)
        fwdbwd = median_ms(fb)
        print(f"torch sdpa_fwd {tag}\t{f:.4f}\t")
        print(f"torch sdpa_bwd {tag}\t{fwdbwd - f:.4f}\t(fwd+bwd {fwdbwd:.4f} minus fwd)")

    N, C = 4096, 4096
    x = torch.randn(N, C, device=dev, dtype=dt, requires_grad=True)
    w = torch.randn(C, device=dev, dtype=dt, requires_grad=True)
    dy = torch.randn(N, C, device=dev, dtype=dt)

    def rms(x, w):
        if hasattr(F, "rms_norm"):
            return F.rms_norm(x, (C,), w, 1e-5)
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * w

    with torch.no_grad():
        f = median_ms(lambda: rms(x, w))

    def fb():
        y = rms(x, w)
        torch.autograd.grad(y, (x, w), dy)
    fwdbwd = median_ms(fb)
    print(f"torch rmsnorm_fwd N={N} C={C} bf16\t{f:.4f}\t")
    print(f"torch rmsnorm_bwd N={N} C={C} bf16\t{fwdbwd - f:.4f}\t(fwd+bwd {fwdbwd:.4f} minus fwd)")

    M = 4096
    a = torch.randn(M, M, device=dev, dtype=dt)
    b = torch.randn(M, M, device=dev, dtype=dt)
    t = median_ms(lambda: a @ b.t())
    print(f"torch matmul {M}^3 bf16\t{t:.4f}\t{2 * M ** 3 / t / 1e9:.1f} TFLOP/s")


if __name__ == "__main__":
    main()
