using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using ElderCuda.Backends;
using Spectre.Console;

namespace Eldr.Cli;

/// <summary>
/// The README's main job: ELDeR on the bundled llama-12L, 3 of 12 layers removed, beside the dense model,
/// ShortGPT, SLEB and `auto`, with held-out perplexity for each. Every run is an ordinary `eldr prune`
/// whose checkpoint, report.json and plots land in out/demo/&lt;method&gt;/.
/// </summary>
public static class DemoCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "output folder", DefaultValueFactory = _ => Path.Combine("out", "demo") };
        var quick = new Option<bool?>("--small") { Description = "small calibration and evaluation (default on the CPU; off on a GPU)" };
        var cmd = new Command("demo", "ELDeR on the bundled llama-12L (3 of 12 layers) beside the dense model, ShortGPT, SLEB and auto") { output, quick, Cli.DeviceOption };
        cmd.SetAction(pr => Cli.Guard(() =>
        {
            string root = FindRepoRoot();
            string model = Path.Combine(root, "models", "llama-12L");
            string calib = Path.Combine(root, "data", "calib-train-sample.txt");
            string heldout = Path.Combine(root, "data", "corpus-heldout.txt");
            foreach (var p in new[] { model, calib, heldout })
                if (!File.Exists(p) && !Directory.Exists(p)) throw new FileNotFoundException($"{p}: the demo needs the bundled model and data (run it from a checkout)");
            string device;
            string requested = pr.GetValue(Cli.DeviceOption)!;
            using (var probe = BackendFactory.Create(requested)) device = probe.Name.StartsWith("cuda") ? (requested.StartsWith("cuda:") ? requested : "cuda") : "cpu";
            bool small = pr.GetValue(quick) ?? device == "cpu";
            string outRoot = pr.GetValue(output)!;
            Directory.CreateDirectory(outRoot);

            // On 2 CPU cores the demo uses a smaller calibration and evaluation than PRUNING.md's protocol
            // (128×512 calibration, all 434 held-out windows); it says so. A GPU runs the full protocol.
            var common = small
                ? new[] { "--calib", calib, "--seqlen", "256", "--samples", "32", "--heldback", "8", "--eval", heldout, "--eval-seqlen", "512", "--eval-windows", "48", "--sleb-windows", "8", "--device", device }
                : new[] { "--calib", calib, "--seqlen", "512", "--samples", "128", "--heldback", "32", "--eval", heldout, "--eval-seqlen", "512", "--device", device };
            AnsiConsole.MarkupLine(small
                ? "[yellow]small run[/] (CPU): calibration 32×256 tokens + 8 held-back windows from data/calib-train-sample.txt; held-out perplexity on the first 48 windows of 512 tokens of data/corpus-heldout.txt. Use a GPU, or --small false, for the full protocol."
                : "full protocol: calibration 128×512 + 32 held-back windows; held-out perplexity on all windows of 512 tokens.");

            var runs = new (string name, string[] args)[]
            {
                ("shortgpt", ["--method", "shortgpt"]),
                ("sleb", ["--method", "sleb", "--no-dense-eval"]),
                ("elder", ["--method", "elder", "--no-dense-eval"]),
                ("auto", small
                    ? ["--method", "auto", "--no-dense-eval", "--auto-recipes", "none,finetune,distill", "--auto-ft-lrs", "1e-4", "--auto-epochs", "2",
                       "--auto-distill-weights", "1", "--auto-distill-temperatures", "2", "--auto-distill-epochs", "2"]
                    : ["--method", "auto", "--no-dense-eval"]),
            };
            var rows = new List<(string method, string removed, double ppl, double secs)>();
            double? dense = null;
            foreach (var (name, extra) in runs)
            {
                string dir = Path.Combine(outRoot, name);
                AnsiConsole.Write(new Rule($"[bold]{name}[/]"));
                var sw = Stopwatch.StartNew();
                string[] args = ["prune", model, "--ratio", "0.25", "--out", dir, "--force", .. common, .. extra];
                int rc = Cli.Run(args);
                if (rc != 0) throw new InvalidOperationException($"eldr {string.Join(' ', args)} failed with exit code {rc}");
                using var rep = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "report.json")));
                var r = rep.RootElement;
                if (r.TryGetProperty("dense_perplexity", out var dp) && dp.ValueKind == JsonValueKind.Object) dense = dp.GetProperty("perplexity").GetDouble();
                var removed = string.Join(",", r.GetProperty("removal_order").EnumerateArray().Select(e => e.GetInt32()).OrderBy(x => x));
                double ppl = r.GetProperty("pruned_perplexity").GetProperty("perplexity").GetDouble();
                string label = name == "elder" || name == "auto" ? $"{name} ({r.GetProperty("recipe").GetString()})" : name;
                rows.Add((label, removed, ppl, sw.Elapsed.TotalSeconds));
            }
            var t = new Table().AddColumns("method", "removed (0-based)", "held-out ppl", "seconds");
            if (dense is { } d) t.AddRow("dense (12 layers)", "–", $"{d:F2}", "");
            foreach (var (m, rm, p, s) in rows) t.AddRow(Markup.Escape(m), rm, $"{p:F2}", $"{s:F0}");
            AnsiConsole.Write(t);
            AnsiConsole.MarkupLine($"checkpoints, report.json and plots: [bold]{Markup.Escape(Path.GetFullPath(outRoot))}[/]/<method>/");
            return 0;
        }));
        return cmd;
    }

    static string FindRepoRoot()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            var d = new DirectoryInfo(start);
            while (d is not null && !File.Exists(Path.Combine(d.FullName, "ELDeR.Cuda.sln"))) d = d.Parent;
            if (d is not null) return d.FullName;
        }
        throw new DirectoryNotFoundException("run the demo from inside the ELDeR.Cuda checkout (the bundled model lives in models/llama-12L)");
    }
}
