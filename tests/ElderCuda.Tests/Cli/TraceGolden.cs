using ElderCuda.IO.Safetensors;

namespace ElderCuda.Tests.Cli;

/// <summary>An `eldr trace` output against transformers' golden file, tensor by tensor (the CPU and CUDA CLI tests).</summary>
public static class TraceGolden
{
    /// <summary>
    /// Asserts that <paramref name="trace"/> holds every tensor of <paramref name="golden"/> with its shape, the same
    /// input ids, and relative errors under <paramref name="outputTol"/> (logits, loss, hidden states) and
    /// <paramref name="gradTol"/> (grad.*). Analytically-zero gradients are skipped (see GoldenParityTests).
    /// Returns the worst errors seen.
    /// </summary>
    public static (double Outputs, double Gradients) AssertMatches(string golden, string trace, double outputTol, double gradTol)
    {
        using var g = SafetensorsFile.Open(golden);
        using var o = SafetensorsFile.Open(trace);
        double worstOut = 0, worstGrad = 0;
        int compared = 0;
        foreach (var t in g.Tensors)
        {
            Assert.True(o.Contains(t.Name), $"trace lacks {t.Name}");
            Assert.Equal(t.Shape, o.Info(t.Name).Shape);
            if (t.Name == "input_ids") { Assert.Equal(g.ReadInt64(t.Name), o.ReadInt64(t.Name)); continue; }
            var reference = g.ReadFloat32(t.Name);
            if (reference.All(v => Math.Abs(v) < 1e-6f)) continue;
            bool grad = t.Name.StartsWith("grad.");
            double e = Rel.Error(o.ReadFloat32(t.Name), reference);
            Assert.True(e < (grad ? gradTol : outputTol), $"{t.Name}: rel err {e:E2}");
            if (grad) worstGrad = Math.Max(worstGrad, e); else worstOut = Math.Max(worstOut, e);
            compared++;
        }
        Assert.True(compared > 10, $"only {compared} tensors compared");
        return (worstOut, worstGrad);
    }
}
