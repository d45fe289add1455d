namespace ElderCuda.Pruning;

/// <summary>
/// PNG plots with ScottPlot 5: ELDeR gates per round, and importance per layer per method. Plotting is
/// a nicety: any failure (e.g. no usable font/graphics stack on a headless box) is caught and returned
/// as a note for the report instead of failing the run.
/// </summary>
public static class Plots
{
    public static List<string> WriteAll(PruneReport r, string dir, List<string> notes)
    {
        var files = new List<string>();
        foreach (var (form, rounds) in r.GatesPerRound)
        {
            if (rounds.Count == 0) continue;
            string f = $"gates-{form.ToLowerInvariant()}.png";
            if (Try(() => Gates(rounds, $"ELDeR gates per round ({form} gate)", Path.Combine(dir, f)), f, notes)) files.Add(f);
        }
        if (r.ScoresPerLayer.Count > 0)
        {
            const string f = "importance.png";
            if (Try(() => Importance(r.ScoresPerLayer, Path.Combine(dir, f)), f, notes)) files.Add(f);
        }
        return files;
    }

    static bool Try(Action a, string what, List<string> notes)
    {
        try { a(); return true; }
        catch (Exception e) { notes.Add($"plot {what} not written: {e.GetType().Name}: {e.Message}"); return false; }
    }

    public static void Gates(List<float[]> rounds, string title, string path)
    {
        var plt = new ScottPlot.Plot();
        for (int r = 0; r < rounds.Count; r++)
        {
            double[] xs = Enumerable.Range(0, rounds[r].Length).Select(i => (double)i).ToArray();
            double[] ys = rounds[r].Select(v => (double)v).ToArray();
            var s = plt.Add.Scatter(xs, ys);
            s.LegendText = $"round {r + 1}";
        }
        plt.Title(title);
        plt.XLabel("layer (original index)");
        plt.YLabel("gate S_i");
        plt.ShowLegend();
        plt.SavePng(path, 900, 500);
    }

    public static void Importance(Dictionary<string, double[]> scores, string path)
    {
        var plt = new ScottPlot.Plot();
        foreach (var (name, v) in scores)
        {
            // each method on its own scale: min-max normalised so the shapes can be compared
            var finite = v.Where(double.IsFinite).ToArray();
            if (finite.Length == 0) continue;
            double lo = finite.Min(), hi = finite.Max(), span = hi > lo ? hi - lo : 1;
            double[] xs = Enumerable.Range(0, v.Length).Select(i => (double)i).ToArray();
            double[] ys = v.Select(x => double.IsFinite(x) ? (x - lo) / span : double.NaN).ToArray();
            var s = plt.Add.Scatter(xs, ys);
            s.LegendText = name;
        }
        plt.Title("Layer importance per method (min-max normalised; low = removable)");
        plt.XLabel("layer (original index)");
        plt.YLabel("normalised score");
        plt.ShowLegend();
        plt.SavePng(path, 900, 500);
    }
}
