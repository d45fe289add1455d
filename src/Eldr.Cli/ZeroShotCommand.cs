using System.CommandLine;
using System.Text.Json;
using ElderCuda.Backends;
using ElderCuda.Eval;
using ElderCuda.IO.Tokenization;
using ElderCuda.Model;

namespace Eldr.Cli;

/// <summary>`eldr zeroshot`: multiple-choice accuracy (acc, acc_norm) as lm-evaluation-harness scores it (DESIGN.md §6).</summary>
public static class ZeroShotCommand
{
    public static Command Create()
    {
        var dir = Cli.DirArgument();
        var data = new Option<string>("--data") { Description = "JSONL items: {\"ctx\", \"endings\", \"label\"} (HellaSwag style) or {\"query\", \"choices\", \"gold\"}", Required = true };
        var maxItems = new Option<int?>("--max-items") { Description = "score only the first N items" };
        var json = new Option<bool>("--json") { Description = "print the result as JSON" };
        var cmd = new Command("zeroshot", "zero-shot multiple choice: acc and acc_norm by summed log-likelihood of each continuation")
            { dir, data, maxItems, json, Cli.DeviceOption, Cli.Fp32Option };
        cmd.SetAction(pr => Cli.Guard(() =>
        {
            var path = pr.GetValue(dir)!;
            var items = ZeroShot.ReadJsonl(pr.GetValue(data)!, pr.GetValue(maxItems));
            var tok = TokenizerLoader.Load(path);
            using IBackend be = Cli.OpenBackend(pr);
            var cfg = ModelConfig.Load(path);
            int maxLen = Cli.DefaultSeqLen(cfg);
            Cli.CheckMemory(be, path, maxLen, items.Max(i => i.Choices.Count), training: false);
            using var model = CausalLM.Load(path, be);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            ZeroShotResult r = null!;
            Cli.WithProgress($"zeroshot {Path.GetFileName(pr.GetValue(data))}", p => r = ZeroShot.Evaluate(model, tok, items, maxLen, p));
            if (pr.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    items = r.Items, acc = r.Acc, acc_stderr = r.AccStderr, acc_norm = r.AccNorm, acc_norm_stderr = r.AccNormStderr,
                    seconds = sw.Elapsed.TotalSeconds, backend = be.Name,
                }));
            else
                Console.WriteLine($"acc {r.Acc:F4} ± {r.AccStderr:F4}  acc_norm {r.AccNorm:F4} ± {r.AccNormStderr:F4}  ({r.Items} items, {sw.Elapsed.TotalSeconds:F1} s on {be.Name})");
            return 0;
        }));
        return cmd;
    }
}
