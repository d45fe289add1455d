using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace ElderCuda.IO.Tokenization;

/// <summary>Finds and loads the tokenizer of a Hugging Face model folder.</summary>
public static class TokenizerLoader
{
    /// <summary>
    /// Loads from a model folder: tokenizer.json (byte-level BPE like GPT-2, or Llama-style Metaspace + byte_fallback BPE),
    /// or tokenizer.model (SentencePiece), or a GPT-2 style vocab.json + merges.txt pair, or llama2.c's tokenizer.bin / tok*.bin.
    /// Uses tokenizer_config.json / config.json for bos/eos where present.
    /// </summary>
    public static ITextTokenizer Load(string modelDir)
    {
        if (!Directory.Exists(modelDir))
            throw new TokenizerException($"Model folder '{modelDir}' does not exist.");

        string jsonPath = Path.Combine(modelDir, "tokenizer.json");
        string spPath = Path.Combine(modelDir, "tokenizer.model");
        string vocabPath = Path.Combine(modelDir, "vocab.json");
        string mergesPath = Path.Combine(modelDir, "merges.txt");

        ITextTokenizer tok;
        int? defaultBos = null, defaultEos = null;
        if (File.Exists(jsonPath))
            tok = Guard(jsonPath, () => TokenizerJson.Load(jsonPath));
        else if (File.Exists(spPath))
        {
            var sp = Guard(spPath, () => { using var s = File.OpenRead(spPath); return new SentencePieceModelTokenizer(s); });
            (defaultBos, defaultEos) = (sp.BosId, sp.EosId);
            tok = sp;
        }
        else if (File.Exists(vocabPath) && File.Exists(mergesPath))
            tok = Guard(vocabPath, () => TokenizerJson.LoadVocabMerges(vocabPath, mergesPath));
        else if (Llama2cSource(modelDir) is { } binPath)
        {
            var sp = Guard(binPath, () => Llama2cTokenizerFile.Load(binPath));
            (defaultBos, defaultEos) = (sp.BosId, sp.EosId);
            tok = sp;
        }
        else
            throw new TokenizerException(
                $"No tokenizer in '{modelDir}': expected tokenizer.json, tokenizer.model, vocab.json with merges.txt, or llama2.c's tokenizer.bin (or tok*.bin).");

        var (bos, eos) = ReadBosEos(modelDir, tok);
        bos ??= defaultBos;
        eos ??= defaultEos;
        switch (tok)
        {
            case ByteLevelBpeTokenizer b: b.BosId = bos; b.EosId = eos; break;
            case SentencePieceModelTokenizer s: s.BosId = bos; s.EosId = eos; break;
            case MetaspaceBpeTokenizer m: m.BosId = bos; m.EosId = eos; break;
        }
        return tok;
    }

    private static T Guard<T>(string file, Func<T> load)
    {
        try { return load(); }
        catch (TokenizerException) { throw; }
        catch (JsonException e) { throw new TokenizerException($"'{file}' is not valid JSON: {e.Message}", e); }
        // anything else a malformed file makes the parsers throw (missing fields, wrong JSON kinds, bad protobuf)
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new TokenizerException($"Cannot read tokenizer '{file}': {e.Message}", e);
        }
    }

    /// <summary>
    /// Whether transformers' tokenizer(text) puts BOS first by default (add_special_tokens=True), for prompts:
    /// tokenizer_config.json's add_bos_token where set; else a tokenizer.json post-processor whose template starts
    /// with a special token; else true for a SentencePiece tokenizer.model (LlamaTokenizer's default) and for
    /// llama2.c's tokenizer files (llama2.c's run prepends BOS). False when the tokenizer has no BOS.
    /// </summary>
    public static bool AddsBos(string modelDir, ITextTokenizer tok)
    {
        if (tok.BosId is null) return false;
        string tcPath = Path.Combine(modelDir, "tokenizer_config.json");
        if (File.Exists(tcPath))
        {
            bool? set = Guard(tcPath, () =>
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(tcPath));
                return doc.RootElement.TryGetProperty("add_bos_token", out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False
                    ? v.GetBoolean() : (bool?)null;
            });
            if (set is { } b) return b;
        }
        string jsonPath = Path.Combine(modelDir, "tokenizer.json");
        if (File.Exists(jsonPath))
            return Guard(jsonPath, () =>
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(jsonPath));
                return doc.RootElement.TryGetProperty("post_processor", out var pp) && TemplateStartsWithSpecial(pp);
            });
        return File.Exists(Path.Combine(modelDir, "tokenizer.model")) || Llama2cSource(modelDir) is not null;
    }

    /// <summary>
    /// The llama2.c tokenizer file <see cref="Load"/> reads for this folder: only when it holds none of the formats
    /// that come first (tokenizer.json, tokenizer.model, vocab.json with merges.txt); null otherwise.
    /// </summary>
    internal static string? Llama2cSource(string modelDir) =>
        File.Exists(Path.Combine(modelDir, "tokenizer.json")) || File.Exists(Path.Combine(modelDir, "tokenizer.model"))
        || (File.Exists(Path.Combine(modelDir, "vocab.json")) && File.Exists(Path.Combine(modelDir, "merges.txt")))
            ? null
            : Llama2cTokenizerFile.Find(modelDir);

    private static bool TemplateStartsWithSpecial(JsonElement pp)
    {
        if (pp.ValueKind != JsonValueKind.Object || !pp.TryGetProperty("type", out var type)) return false;
        if (type.GetString() == "Sequence" && pp.TryGetProperty("processors", out var list) && list.ValueKind == JsonValueKind.Array)
            return list.EnumerateArray().Any(TemplateStartsWithSpecial);
        return type.GetString() == "TemplateProcessing" && pp.TryGetProperty("single", out var single)
            && single.ValueKind == JsonValueKind.Array && single.GetArrayLength() > 0
            && single[0].ValueKind == JsonValueKind.Object && single[0].TryGetProperty("SpecialToken", out _);
    }

    /// <summary>bos/eos from tokenizer_config.json (token strings), else from config.json (ids).</summary>
    private static (int? Bos, int? Eos) ReadBosEos(string dir, ITextTokenizer tok)
    {
        int? bos = null, eos = null;
        string tcPath = Path.Combine(dir, "tokenizer_config.json");
        if (File.Exists(tcPath))
        {
            Guard(tcPath, () =>
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(tcPath));
                bos = TokenOf(doc.RootElement, "bos_token") is { } b ? tok.TokenToId(b) : null;
                eos = TokenOf(doc.RootElement, "eos_token") is { } e ? tok.TokenToId(e) : null;
                return 0;
            });
        }
        string cfgPath = Path.Combine(dir, "config.json");
        if ((bos is null || eos is null) && File.Exists(cfgPath))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(cfgPath));
                bos ??= IdOf(doc.RootElement, "bos_token_id", tok.VocabSize);
                eos ??= IdOf(doc.RootElement, "eos_token_id", tok.VocabSize);
            }
            catch (JsonException) { /* config.json problems are reported by the model config loader, not here */ }
        }
        return (bos, eos);
    }

    private static string? TokenOf(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var v)) return null;
        return v.ValueKind switch
        {
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Object when v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String => c.GetString(),
            _ => null,
        };
    }

    private static int? IdOf(JsonElement root, string name, int vocabSize)
    {
        if (!root.TryGetProperty(name, out var v)) return null;
        // eos_token_id may be a list (Llama-3 instruct): the first one is the canonical end of text
        if (v.ValueKind == JsonValueKind.Array) v = v.GetArrayLength() > 0 ? v[0] : default;
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int id) && id >= 0 && id < vocabSize ? id : null;
    }
}

/// <summary>Reads HF tokenizer.json into one of the tokenizer implementations.</summary>
internal static class TokenizerJson
{
    public static ITextTokenizer Load(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { AllowTrailingCommas = true });
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new TokenizerException($"'{path}' has no \"model\" object.");
        string type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "BPE";
        if (type != "BPE")
            throw new TokenizerException($"'{path}': model type '{type}' is not supported (only BPE).");
        if (!model.TryGetProperty("vocab", out var vocabEl) || vocabEl.ValueKind != JsonValueKind.Object)
            throw new TokenizerException($"'{path}': model.vocab is missing or not an object.");
        if (!model.TryGetProperty("merges", out var mergesEl) || mergesEl.ValueKind != JsonValueKind.Array)
            throw new TokenizerException($"'{path}': model.merges is missing or not an array.");

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in vocabEl.EnumerateObject()) vocab[p.Name] = p.Value.GetInt32();
        var merges = new List<(string, string)>();
        foreach (var m in mergesEl.EnumerateArray())
        {
            if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2) merges.Add((m[0].GetString()!, m[1].GetString()!));
            else if (m.ValueKind == JsonValueKind.String && m.GetString()!.Split(' ') is [var a, var b]) merges.Add((a, b));
            else throw new TokenizerException($"'{path}': model.merges has an entry that is not a pair: {m.GetRawText()}");
        }
        var added = new List<AddedToken>();
        if (root.TryGetProperty("added_tokens", out var addedEl) && addedEl.ValueKind == JsonValueKind.Array)
            foreach (var a in addedEl.EnumerateArray())
                added.Add(new AddedToken(a.GetProperty("id").GetInt32(), a.GetProperty("content").GetString()!,
                    Bool(a, "special"), Bool(a, "lstrip"), Bool(a, "rstrip"), Bool(a, "single_word")));

        bool byteFallback = Bool(model, "byte_fallback");
        bool ignoreMerges = Bool(model, "ignore_merges");
        var pre = Prop(root, "pre_tokenizer");
        var norm = Prop(root, "normalizer");
        var dec = Prop(root, "decoder");
        if (Mentions(pre, "ByteLevel") || Mentions(dec, "ByteLevel"))
        {
            if (byteFallback) throw new TokenizerException($"'{path}': byte_fallback with a ByteLevel pre-tokenizer is not supported.");
            var (preTok, prefixSpace) = ByteLevelPreTokenizer(path, pre);
            return new ByteLevelBpeTokenizer(path, vocab, merges, added, preTok, prefixSpace, ByteLevelNormalizer(path, norm), ignoreMerges);
        }
        if (Mentions(pre, "Metaspace") || Mentions(norm, "Prepend") || Mentions(norm, "Replace") || byteFallback)
            return MetaspaceBpeTokenizer.FromJson(path, vocab, merges, added, norm, pre, dec, byteFallback,
                Str(model, "unk_token"), Bool(model, "fuse_unk"), ignoreMerges);
        throw new TokenizerException($"'{path}': unsupported tokenizer (pre_tokenizer {pre?.GetRawText() ?? "null"}); expected ByteLevel or Metaspace BPE.");
    }

    /// <summary>GPT-2 style vocab.json + merges.txt (the files behind a slow GPT2Tokenizer), read as byte-level BPE.</summary>
    public static ITextTokenizer LoadVocabMerges(string vocabPath, string mergesPath)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(vocabPath));
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in doc.RootElement.EnumerateObject()) vocab[p.Name] = p.Value.GetInt32();
        var merges = new List<(string, string)>();
        foreach (var line in File.ReadLines(mergesPath))
        {
            if (line.StartsWith("#version") || line.Length == 0) continue;
            if (line.Split(' ') is [var a, var b]) merges.Add((a, b));
            else throw new TokenizerException($"'{mergesPath}': line is not a merge pair: '{line}'");
        }
        // a slow GPT-2 tokenizer reads "<|endoftext|>" in text as the special token
        var added = vocab.TryGetValue("<|endoftext|>", out int eot) ? new List<AddedToken> { new(eot, "<|endoftext|>", true) } : [];
        return new ByteLevelBpeTokenizer(mergesPath, vocab, merges, added, Gpt2PreTokenizer.Instance, false, null, false);
    }

    private static (PreTokenizer, bool AddPrefixSpace) ByteLevelPreTokenizer(string path, JsonElement? pre)
    {
        if (pre is not { } p) return (Gpt2PreTokenizer.Instance, false);
        string type = Str(p, "type") ?? "";
        if (type == "ByteLevel")
            return (Bool(p, "use_regex", true) ? Gpt2PreTokenizer.Instance : WholeTextPreTokenizer.Instance, Bool(p, "add_prefix_space"));
        if (type == "Sequence" && p.TryGetProperty("pretokenizers", out var list))
        {
            var items = list.EnumerateArray().ToList();
            // Llama-3 / Qwen2: Split(regex, Isolated) then ByteLevel(use_regex: false)
            if (items.Count == 2 && Str(items[0], "type") == "Split" && Str(items[1], "type") == "ByteLevel" && !Bool(items[1], "use_regex", true)
                && Str(items[0], "behavior") == "Isolated" && !Bool(items[0], "invert")
                && items[0].TryGetProperty("pattern", out var pat) && Str(pat, "Regex") is { } rx)
                return (new IsolatedRegexPreTokenizer(new Regex(rx, RegexOptions.Compiled | RegexOptions.CultureInvariant)), Bool(items[1], "add_prefix_space"));
            if (items.Count == 1 && Str(items[0], "type") == "ByteLevel") return ByteLevelPreTokenizer(path, items[0]);
        }
        throw new TokenizerException($"'{path}': byte-level pre_tokenizer not supported: {p.GetRawText()}");
    }

    private static Func<string, string>? ByteLevelNormalizer(string path, JsonElement? norm)
    {
        if (norm is not { } n) return null;
        string type = Str(n, "type") ?? "";
        if (type == "NFC") return s => s.Normalize(NormalizationForm.FormC);
        if (type == "Sequence" && n.TryGetProperty("normalizers", out var list) && list.GetArrayLength() == 0) return null;
        throw new TokenizerException($"'{path}': normalizer not supported with byte-level BPE: {n.GetRawText()}");
    }

    internal static JsonElement? Prop(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;
    internal static string? Str(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
    internal static bool Bool(JsonElement e, string name, bool dflt = false) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : dflt;
    internal static bool Mentions(JsonElement? e, string type) => e is { } x && x.GetRawText().Contains($"\"{type}\"", StringComparison.Ordinal);
}
