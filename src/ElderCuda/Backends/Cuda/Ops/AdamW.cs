using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cuda;

// kernels/adamw.cu
public sealed partial class CudaBackend
{
    public void AdamW(Tensor param, Tensor master, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, int step)
    {
        Need(master, DType.F32, "AdamW", "master"); Need(grad, DType.F32, "AdamW", "grad");
        Need(m, DType.F32, "AdamW", "m"); Need(v, DType.F32, "AdamW", "v");
        NeedFloat(param, "AdamW", "param");
        SameCount(param, master, "AdamW"); SameCount(grad, master, "AdamW"); SameCount(m, master, "AdamW"); SameCount(v, master, "AdamW");
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), "AdamW step is 1-based");
        float bc1 = (float)(1 - Math.Pow(beta1, step)), bc2 = (float)(1 - Math.Pow(beta2, step));
        LaunchN("adamw", $"adamw_{Sfx(param.DType)}", master.Count, P(param), P(master), P(grad), P(m), P(v), master.Count,
            lr, beta1, beta2, eps, weightDecay, bc1, bc2);
    }
}
