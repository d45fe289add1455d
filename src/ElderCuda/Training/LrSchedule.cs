namespace ElderCuda.Training;

/// <summary>Linear warmup then cosine decay to MinFactor·Base (PRUNING.md's stage-2 runs: cosine after 3% warmup).</summary>
public sealed record LrSchedule(double Base, int TotalSteps, int WarmupSteps = 0, double MinFactor = 0.0, bool Cosine = true)
{
    public static LrSchedule CosineWithWarmup(double lr, int totalSteps, double warmupFraction = 0.03)
        => new(lr, totalSteps, (int)Math.Ceiling(warmupFraction * totalSteps));

    /// <summary>The learning rate of 1-based step t.</summary>
    public double At(int step)
    {
        if (WarmupSteps > 0 && step <= WarmupSteps) return Base * step / WarmupSteps;
        if (!Cosine || TotalSteps <= WarmupSteps) return Base;
        double p = Math.Clamp((double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps), 0, 1);
        double min = Base * MinFactor;
        return min + 0.5 * (Base - min) * (1 + Math.Cos(Math.PI * p));
    }
}
