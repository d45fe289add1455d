namespace ElderCuda.Tests.Model;

/// <summary>Gradients checked against float64 central differences of a loss written out independently of the code under test.</summary>
public static class FiniteDifference
{
    /// <summary>
    /// For every element of <paramref name="x"/> (which <paramref name="loss"/> reads), (ℓ(x + h) − ℓ(x − h)) / (2h),
    /// with the step as float32 rounds it, must match <paramref name="got"/> to tol·(1 + |want|).
    /// </summary>
    public static void Check(float[] x, float[] got, string name, Func<double> loss, float h = 1e-2f, double tol = 1e-3)
    {
        Assert.Equal(x.Length, got.Length);
        for (int i = 0; i < x.Length; i++)
        {
            float x0 = x[i];
            x[i] = x0 + h; double lp = loss();
            x[i] = x0 - h; double lm = loss();
            x[i] = x0;
            double want = (lp - lm) / ((double)(x0 + h) - (x0 - h));
            Assert.True(Math.Abs(got[i] - want) <= tol * (1 + Math.Abs(want)), $"{name}[{i}] = {got[i]}, finite difference {want}");
        }
    }
}
