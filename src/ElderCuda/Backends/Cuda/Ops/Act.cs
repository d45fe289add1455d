using ElderCuda.Tensors;

namespace ElderCuda.Backends.Cuda;

// kernels/act.cu
public sealed partial class CudaBackend
{
    static string ActName(Activation k) => k switch
    {
        Activation.Silu => "silu", Activation.GeluNew => "gelu_new", Activation.Relu => "relu",
        _ => throw new ArgumentOutOfRangeException(nameof(k), k, null),
    };

    public void SwiGlu(Tensor output, Tensor gate, Tensor up)
    {
        SameCount(output, gate, "SwiGlu"); SameCount(output, up, "SwiGlu");
        var temps = new List<Tensor>(); var d = output.DType;
        var g = As(gate, d, temps); var u = As(up, d, temps);
        LaunchN("act", $"swiglu_fwd_{Sfx(d)}", output.Count, P(output), P(g), P(u), output.Count);
        Free(temps);
    }

    public void SwiGluBackward(Tensor dGate, Tensor dUp, Tensor dOut, Tensor gate, Tensor up)
    {
        SameCount(dGate, gate, "SwiGluBackward"); SameCount(dUp, up, "SwiGluBackward"); SameCount(dOut, gate, "SwiGluBackward");
        var d = gate.DType; Need(dGate, d, "SwiGluBackward", "dGate"); Need(dUp, d, "SwiGluBackward", "dUp");
        var temps = new List<Tensor>();
        var g = As(dOut, d, temps); var u = As(up, d, temps);
        LaunchN("act", $"swiglu_bwd_{Sfx(d)}", gate.Count, P(dGate), P(dUp), P(g), P(gate), P(u), gate.Count);
        Free(temps);
    }

    public void Act(Activation kind, Tensor output, Tensor x)
    {
        SameCount(output, x, "Act");
        var temps = new List<Tensor>(); var d = output.DType;
        var xx = As(x, d, temps);
        LaunchN("act", $"{ActName(kind)}_fwd_{Sfx(d)}", x.Count, P(output), P(xx), x.Count);
        Free(temps);
    }

    public void ActBackward(Activation kind, Tensor dx, Tensor dOut, Tensor x)
    {
        SameCount(dx, x, "ActBackward"); SameCount(dOut, x, "ActBackward");
        var temps = new List<Tensor>(); var d = dx.DType;
        var g = As(dOut, d, temps); var xx = As(x, d, temps);
        LaunchN("act", $"{ActName(kind)}_bwd_{Sfx(d)}", x.Count, P(dx), P(g), P(xx), x.Count);
        Free(temps);
    }
}
