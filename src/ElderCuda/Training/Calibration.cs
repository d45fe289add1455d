using System.Text.Json;

namespace ElderCuda.Training;

/// <summary>Settings for drawing calibration windows (issue #4 item 1).</summary>
public sealed record CalibrationOptions
{
    public int SeqLen { get; init; } = 512;
    public int Samples { get; init; } = 128;
    /// <summary>Held-back windows; null = 32, or 25% of Samples when Samples &lt; 128.</summary>
    public int? HeldBack { get; init; }
    public int Seed { get; init; } = 0;
    /// <summary>Take only the first fraction of each file's characters (the reference's training split is 0.95).</summary>
    public double TrainFraction { get; init; } = 1.0;

    public int ResolvedHeldBack => HeldBack ?? (Samples >= 128 ? 32 : Math.Max(1, (int)Math.Round(0.25 * Samples)));
}

/// <summary>
/// Calibration windows and the held-back split. The held-back windows never overlap a calibration
/// window, are never trained on, and are what every automatic choice is made on (DESIGN.md §4).
/// </summary>
public sealed class CalibrationData
{
    public required int SeqLen { get; init; }
    public required int StreamLength { get; init; }
    public required int[] TrainStarts { get; init; }
    public required int[] HeldBackStarts { get; init; }
    public required IReadOnlyList<int[]> Train { get; init; }
    public required IReadOnlyList<int[]> HeldBack { get; init; }
    public string Source { get; init; } = "";

    public long TrainTokens => (long)Train.Count * SeqLen;
}

public static class Calibration
{
    public const string EndOfText = "<|endoftext|>";

    /// <summary>
    /// The documents of a calibration source, in order: a .txt/.raw file (one document), a folder
    /// (every *.txt below it, sorted by path with ordinal comparison), or a .jsonl file (one document
    /// per line's "text" field). trainFraction keeps the first part of each file (characters for text,
    /// records for JSONL), which is how the reference builds its training split.
    /// </summary>
    public static List<string> ReadDocuments(string path, double trainFraction = 1.0)
    {
        if (trainFraction is <= 0 or > 1) throw new ArgumentException($"train fraction {trainFraction} must be in (0, 1]");
        var docs = new List<string>();
        if (Directory.Exists(path))
        {
            var files = Directory.GetFiles(path, "*.txt", SearchOption.AllDirectories)
                .OrderBy(f => Path.GetRelativePath(path, f).Replace('\\', '/'), StringComparer.Ordinal).ToList();
            if (files.Count == 0) throw new FileNotFoundException($"{path}: no *.txt files in this folder");
            foreach (var f in files) docs.Add(Head(File.ReadAllText(f), trainFraction));
            return docs;
        }
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: calibration source not found (a .txt file, a folder of .txt files, WikiText-2 raw, or .jsonl with a \"text\" field)");
        if (path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
        {
            var records = new List<string>();
            int lineNo = 0;
            foreach (var line in File.ReadLines(path))
            {
                lineNo++;
                if (string.IsNullOrWhiteSpace(line)) continue;
                using var doc = JsonDocument.Parse(line);
                if (!doc.RootElement.TryGetProperty("text", out var t) || t.ValueKind != JsonValueKind.String)
                    throw new InvalidDataException($"{path}:{lineNo}: no string field \"text\"");
                records.Add(t.GetString()!);
            }
            int keep = (int)Math.Ceiling(records.Count * trainFraction);
            docs.AddRange(records.Take(keep));
            return docs;
        }
        // .txt, WikiText-2 *.raw, or any other text file
        docs.Add(Head(File.ReadAllText(path), trainFraction));
        return docs;
    }

    static string Head(string text, double fraction) => fraction >= 1 ? text : text[..(int)(text.Length * fraction)];

    /// <summary>
    /// Tokenize the documents as one stream with &lt;|endoftext|&gt; after each. Each document is encoded
    /// separately: the special token splits the text anyway, so this equals encoding the concatenation.
    /// </summary>
    public static int[] Tokenize(IReadOnlyList<string> documents, Func<string, int[]> encode, int endOfTextId)
    {
        var stream = new List<int>();
        foreach (var d in documents)
        {
            stream.AddRange(encode(d));
            stream.Add(endOfTextId);
        }
        return stream.ToArray();
    }

    /// <summary>
    /// Draw calibration windows at random start positions (seeded), then held-back windows at random
    /// positions that overlap no calibration window. Calibration windows may overlap each other, as
    /// random draws do in the reference.
    /// </summary>
    public static CalibrationData Draw(int[] stream, CalibrationOptions o, string source = "")
    {
        int T = o.SeqLen;
        if (T < 2) throw new ArgumentException("seqlen must be at least 2");
        int hb = o.ResolvedHeldBack;
        if (stream.Length < T * (hb + 1))
            throw new ArgumentException($"calibration source has {stream.Length} tokens, too few for windows of {T} plus {hb} held-back windows");
        var rng = new Random(o.Seed);
        int maxStart = stream.Length - T;
        var train = new int[o.Samples];
        for (int i = 0; i < train.Length; i++) train[i] = rng.Next(0, maxStart + 1);

        // Mark every token covered by a calibration window; a held-back window must avoid all of them.
        var covered = new bool[stream.Length];
        foreach (var s in train) Array.Fill(covered, true, s, T);
        // prefix sums answer "is [s, s+T) free?" in O(1)
        var pre = new int[stream.Length + 1];
        for (int i = 0; i < stream.Length; i++) pre[i + 1] = pre[i] + (covered[i] ? 1 : 0);
        var free = new List<int>();
        for (int s = 0; s <= maxStart; s++) if (pre[s + T] - pre[s] == 0) free.Add(s);

        var held = new List<int>();
        var taken = new bool[stream.Length];
        var hrng = new Random(unchecked(o.Seed * 7919 + 1));
        int attempts = 0;
        while (held.Count < hb && free.Count > 0 && attempts < 100_000)
        {
            attempts++;
            int s = free[hrng.Next(free.Count)];
            // held-back windows do not overlap each other either, so none is counted twice
            bool clash = false;
            for (int i = s; i < s + T && !clash; i++) clash = taken[i];
            if (clash) continue;
            Array.Fill(taken, true, s, T);
            held.Add(s);
        }
        if (held.Count < hb)
            throw new ArgumentException($"could place only {held.Count} of {hb} held-back windows of {T} tokens outside the {o.Samples} calibration windows ({stream.Length} tokens); use fewer --samples or --heldback, or a larger source");
        held.Sort();

        return new CalibrationData
        {
            SeqLen = T, StreamLength = stream.Length, TrainStarts = train, HeldBackStarts = held.ToArray(),
            Train = train.Select(s => stream.AsSpan(s, T).ToArray()).ToList(),
            HeldBack = held.Select(s => stream.AsSpan(s, T).ToArray()).ToList(),
            Source = source,
        };
    }
}
