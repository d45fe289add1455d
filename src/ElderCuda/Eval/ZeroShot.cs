using System.Text.Json;
using ElderCuda.IO.Tokenization;
using ElderCuda.Model;

namespace ElderCuda.Eval;

/// <summary>One multiple-choice item: a context, its candidate continuations, and the index of the right one.</summary>
public sealed record ZeroShotItem(string Context, IReadOnlyList<string> Choices, int Label);

/// <summary>
/// acc: the share of items whose highest summed log-likelihood is the right choice; acc_norm: the same with each
/// log-likelihood divided by its choice's length in characters (lm-evaluation-harness). Standard errors are
/// sqrt(p·(1 − p)/(n − 1)), as the harness reports them.
/// </summary>
public sealed record ZeroShotResult(int Items, double Acc, double AccStderr, double AccNorm, double AccNormStderr);

/// <summary>
/// Zero-shot multiple choice scored as lm-evaluation-harness does (DESIGN.md §6): each choice is the continuation
/// " " + choice after the context; its score is Σ log p(continuation tokens | context), from one forward pass over
/// context + continuation. Tokens are split as the harness splits them: the whole text is encoded once and the
/// continuation is what follows the context's own encoding (trailing spaces of the context move into the
/// continuation). No special tokens are added. Sequences longer than the model's window keep their last tokens.
/// </summary>
public static class ZeroShot
{
    /// <summary>
    /// JSONL, one item per line: HellaSwag-style {"ctx", "endings", "label"}, or the harness's {"query", "choices", "gold"}
    /// ("context" is also read for the context). A label may be a number or a numeric string. With maxItems, only
    /// the first maxItems items are kept.
    /// </summary>
    public static List<ZeroShotItem> ReadJsonl(string path, int? maxItems = null)
    {
        if (maxItems < 1) throw new ArgumentException($"{path}: the number of items to score must be ≥ 1 (got {maxItems})");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such JSONL file");
        var items = new List<ZeroShotItem>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                using var doc = JsonDocument.Parse(line);
                var o = doc.RootElement;
                if (o.ValueKind != JsonValueKind.Object) throw new InvalidDataException("not a JSON object");
                string ctx = Str(o, "ctx") ?? Str(o, "query") ?? Str(o, "context")
                             ?? throw new InvalidDataException("no \"ctx\", \"query\" or \"context\" string");
                var ch = (o.TryGetProperty("endings", out var e) ? e : o.TryGetProperty("choices", out var c) ? c : default);
                if (ch.ValueKind != JsonValueKind.Array || ch.GetArrayLength() < 2 || ch.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.String))
                    throw new InvalidDataException("\"endings\" (or \"choices\") must be an array of at least two strings");
                var choices = ch.EnumerateArray().Select(x => x.GetString()!).ToList();
                var lab = o.TryGetProperty("label", out var l) ? l : o.TryGetProperty("gold", out var g) ? g : default;
                int label = lab.ValueKind switch
                {
                    JsonValueKind.Number when lab.TryGetInt32(out int v) => v,
                    JsonValueKind.String when int.TryParse(lab.GetString(), out int v) => v,
                    _ => throw new InvalidDataException("\"label\" (or \"gold\") must be an integer"),
                };
                if (label < 0 || label >= choices.Count) throw new InvalidDataException($"label {label} is not one of the {choices.Count} choices");
                items.Add(new ZeroShotItem(ctx, choices, label));
            }
            catch (Exception ex) when (ex is JsonException or InvalidDataException)
            {
                throw new InvalidDataException($"{path}, line {lineNo}: {ex.Message}", ex);
            }
        }
        if (items.Count == 0) throw new InvalidDataException($"{path}: no items");
        return maxItems is { } n && n < items.Count ? items.GetRange(0, n) : items;
    }

    static string? Str(JsonElement o, string name) => o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    /// <summary>The harness's split of context + continuation into token ids.</summary>
    public static (int[] Context, int[] Continuation) Split(ITextTokenizer tok, string context, string continuation)
    {
        int spaces = context.Length - context.TrimEnd().Length;
        if (spaces > 0) { continuation = context[^spaces..] + continuation; context = context[..^spaces]; }
        var whole = tok.Encode(context + continuation);
        var ctx = tok.Encode(context);
        int n = Math.Min(ctx.Length, whole.Length);
        return (whole[..n], whole[n..]);
    }

    /// <summary>
    /// Σ log p(continuation | context) for each request, in one batch: the sequences are right-padded to a common
    /// length, which causal attention makes harmless to the positions that are scored.
    /// </summary>
    public static double[] LogLikelihoods(CausalLM model, IReadOnlyList<(int[] Context, int[] Continuation)> requests, int maxLength)
    {
        var seqs = new List<(int[] ids, int scoreFrom)>();
        foreach (var (ctx, cont) in requests)
        {
            if (cont.Length == 0) { seqs.Add(([], 0)); continue; }
            if (ctx.Length == 0) throw new ArgumentException("a zero-shot context encodes to no tokens");
            if (cont.Length >= maxLength) throw new ArgumentException($"a continuation of {cont.Length} tokens does not fit a window of {maxLength}");
            int[] full = [.. ctx, .. cont];
            if (full.Length > maxLength) full = full[^maxLength..];
            seqs.Add((full, full.Length - cont.Length));
        }
        int T = seqs.Max(s => s.ids.Length);
        var result = new double[requests.Count];
        if (T < 2) return result;
        int B = seqs.Count;
        var ids = new int[B * T];
        for (int b = 0; b < B; b++) seqs[b].ids.CopyTo(ids, b * T);
        var r = model.Step(new TokenBatch(ids, B, T), new StepOptions());
        for (int b = 0; b < B; b++)
        {
            var (s, from) = seqs[b];
            double ll = 0;
            // position n's NLL is that of token n + 1
            for (int n = from - 1; n < s.Length - 1; n++) ll -= r.TokenNll[b * T + n];
            result[b] = ll;
        }
        return result;
    }

    public static ZeroShotResult Evaluate(CausalLM model, ITextTokenizer tok, IReadOnlyList<ZeroShotItem> items, int maxLength,
        IProgress<double>? progress = null, CancellationToken ct = default)
    {
        int done = 0;
        return Evaluate(items, item =>
        {
            ct.ThrowIfCancellationRequested();
            var ll = LogLikelihoods(model, item.Choices.Select(c => Split(tok, item.Context, " " + c)).ToList(), maxLength);
            progress?.Report((double)++done / items.Count);
            return ll;
        });
    }

    /// <summary>acc and acc_norm from each item's log-likelihoods (one per choice, in order).</summary>
    public static ZeroShotResult Evaluate(IReadOnlyList<ZeroShotItem> items, Func<ZeroShotItem, double[]> score)
    {
        int acc = 0, accNorm = 0;
        foreach (var item in items)
        {
            var ll = score(item);
            if (ll.Length != item.Choices.Count) throw new InvalidOperationException($"{ll.Length} scores for {item.Choices.Count} choices");
            if (ArgMax(ll) == item.Label) acc++;
            if (ArgMax(ll.Select((v, i) => v / Math.Max(1, item.Choices[i].Length)).ToArray()) == item.Label) accNorm++;
        }
        int n = items.Count;
        double p = (double)acc / n, q = (double)accNorm / n;
        double Se(double x) => n > 1 ? Math.Sqrt(x * (1 - x) / (n - 1)) : double.NaN;
        return new ZeroShotResult(n, p, Se(p), q, Se(q));
    }

    static int ArgMax(double[] v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }
}
