using System.Text;
using System.Text.Json;

namespace ElderCuda.IO.Tokenization;

/// <summary>
/// Llama/Mistral-style tokenizer.json: BPE over text whose spaces are "▁" (from a Prepend+Replace normalizer or a
/// Metaspace pre-tokenizer), with byte_fallback to "&lt;0xNN&gt;" tokens for characters outside the vocabulary.
/// Written here rather than with Microsoft.ML.Tokenizers because its BpeTokenizer has no byte fallback, and without
/// a whitespace split the whole text is one BPE word, which needs the heap-based merge below to stay O(n log n).
/// </summary>
internal sealed class MetaspaceBpeTokenizer : ITextTokenizer
{
    private const char Meta = '\u2581';
    private readonly Dictionary<string, int> _vocab;
    private readonly string?[] _idToToken;
    private readonly BpeMergeTable _merges;
    private readonly AddedTokenSplitter _splitter;
    private readonly Dictionary<string, int> _added = new(StringComparer.Ordinal);
    private readonly List<Func<string, bool, string>> _normalizers = [];   // (text, isFirstSegment) -> text
    private readonly bool _splitOnMeta;
    private readonly bool _byteFallback;
    private readonly int? _unkId;
    private readonly bool _fuseUnk;
    private readonly bool _ignoreMerges;
    private readonly int[] _byteIds = new int[256];
    private readonly List<Func<List<string>, List<string>>> _decoders = [];
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal); // Encode may run on several threads
    private int _cacheSize; // ConcurrentDictionary.Count takes every lock

    public int VocabSize { get; }
    public int? BosId { get; internal set; }
    public int? EosId { get; internal set; }

    private MetaspaceBpeTokenizer(string path, Dictionary<string, int> vocab, List<(string A, string B)> merges, List<AddedToken> added,
        bool byteFallback, string? unk, bool fuseUnk, bool ignoreMerges, bool splitOnMeta)
    {
        _vocab = vocab;
        _byteFallback = byteFallback;
        _fuseUnk = fuseUnk;
        _ignoreMerges = ignoreMerges;
        _splitOnMeta = splitOnMeta;
        _unkId = unk is not null && vocab.TryGetValue(unk, out int u) ? u : null;
        for (int b = 0; b < 256; b++) _byteIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out int id) ? id : -1;
        _merges = new BpeMergeTable(path, vocab, merges);
        _splitter = new AddedTokenSplitter(added);
        foreach (var t in added) _added[t.Content] = t.Id;
        _idToToken = AddedToken.IdToToken(vocab, added);
        VocabSize = _idToToken.Length;
    }

    public static MetaspaceBpeTokenizer FromJson(string path, Dictionary<string, int> vocab, List<(string, string)> merges,
        List<AddedToken> added, JsonElement? norm, JsonElement? pre, JsonElement? dec, bool byteFallback, string? unk, bool fuseUnk, bool ignoreMerges)
    {
        bool split = false;
        Func<string, bool, string>? preStep = null;
        if (pre is { } p)
        {
            if (TokenizerJson.Str(p, "type") != "Metaspace")
                throw new TokenizerException($"'{path}': pre_tokenizer not supported with Metaspace BPE: {p.GetRawText()}");
            string repl = TokenizerJson.Str(p, "replacement") ?? "\u2581";
            // older files: add_prefix_space: true means "always"
            string scheme = TokenizerJson.Str(p, "prepend_scheme") ?? (TokenizerJson.Bool(p, "add_prefix_space", true) ? "always" : "never");
            split = TokenizerJson.Bool(p, "split", true);
            preStep = (s, first) =>
            {
                s = s.Replace(" ", repl);
                bool prepend = scheme == "always" || (scheme == "first" && first);
                return prepend && !s.StartsWith(repl, StringComparison.Ordinal) ? repl + s : s;
            };
        }
        var tok = new MetaspaceBpeTokenizer(path, vocab, merges, added, byteFallback, unk, fuseUnk, ignoreMerges, split);
        if (norm is { } n) tok.AddNormalizer(path, n);
        if (preStep is not null) tok._normalizers.Add(preStep);
        if (dec is { } d) tok.AddDecoder(path, d);
        return tok;
    }

    private void AddNormalizer(string path, JsonElement n)
    {
        switch (TokenizerJson.Str(n, "type"))
        {
            case "Sequence":
                foreach (var x in n.GetProperty("normalizers").EnumerateArray()) AddNormalizer(path, x);
                break;
            case "Prepend":
                string pre = TokenizerJson.Str(n, "prepend") ?? "";
                _normalizers.Add((s, _) => s.Length == 0 ? s : pre + s);
                break;
            case "Replace" when n.TryGetProperty("pattern", out var pat) && TokenizerJson.Str(pat, "String") is { } from:
                string to = TokenizerJson.Str(n, "content") ?? "";
                _normalizers.Add((s, _) => s.Replace(from, to, StringComparison.Ordinal));
                break;
            case "NFC":
                _normalizers.Add((s, _) => s.Normalize(NormalizationForm.FormC));
                break;
            default:
                throw new TokenizerException($"'{path}': normalizer not supported: {n.GetRawText()}");
        }
    }

    private void AddDecoder(string path, JsonElement d)
    {
        switch (TokenizerJson.Str(d, "type"))
        {
            case "Sequence":
                foreach (var x in d.GetProperty("decoders").EnumerateArray()) AddDecoder(path, x);
                break;
            case "Replace" when d.TryGetProperty("pattern", out var pat) && TokenizerJson.Str(pat, "String") is { } from:
                string to = TokenizerJson.Str(d, "content") ?? "";
                _decoders.Add(toks => toks.Select(t => t.Replace(from, to, StringComparison.Ordinal)).ToList());
                break;
            case "ByteFallback":
                _decoders.Add(DecodeByteFallback);
                break;
            case "Fuse":
                _decoders.Add(toks => [string.Concat(toks)]);
                break;
            case "Strip":
                string content = TokenizerJson.Str(d, "content") ?? " ";
                int start = d.TryGetProperty("start", out var st) ? st.GetInt32() : 0;
                int stop = d.TryGetProperty("stop", out var sp) ? sp.GetInt32() : 0;
                _decoders.Add(toks => toks.Select(t => Strip(t, content, start, stop)).ToList());
                break;
            case "Metaspace":
                string repl = TokenizerJson.Str(d, "replacement") ?? "\u2581";
                string scheme = TokenizerJson.Str(d, "prepend_scheme") ?? (TokenizerJson.Bool(d, "add_prefix_space", true) ? "always" : "never");
                _decoders.Add(toks => toks.Select((t, i) =>
                {
                    t = t.Replace(repl, " ", StringComparison.Ordinal);
                    return i == 0 && scheme != "never" && t.StartsWith(' ') ? t[1..] : t;
                }).ToList());
                break;
            default:
                throw new TokenizerException($"'{path}': decoder not supported: {d.GetRawText()}");
        }
    }

    private static string Strip(string t, string content, int start, int stop)
    {
        int s = 0, e = t.Length;
        for (int k = 0; k < start && t.AsSpan(s, e - s).StartsWith(content); k++) s += content.Length;
        for (int k = 0; k < stop && t.AsSpan(s, e - s).EndsWith(content); k++) e -= content.Length;
        return t[s..e];
    }

    /// <summary>HF ByteFallback decoder: runs of "&lt;0xNN&gt;" become their UTF-8 text, or one U+FFFD per byte if invalid.</summary>
    private static List<string> DecodeByteFallback(List<string> toks)
    {
        var output = new List<string>(toks.Count);
        var bytes = new List<byte>();
        void Flush()
        {
            if (bytes.Count == 0) return;
            try { output.Add(new UTF8Encoding(false, true).GetString(bytes.ToArray())); }
            catch (DecoderFallbackException) { for (int k = 0; k < bytes.Count; k++) output.Add("\uFFFD"); }
            bytes.Clear();
        }
        foreach (var t in toks)
        {
            if (t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>'
                && byte.TryParse(t.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte b))
                bytes.Add(b);
            else { Flush(); output.Add(t); }
        }
        Flush();
        return output;
    }

    public int[] Encode(string text)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        bool first = true;
        _splitter.Split(text,
            (start, length) =>
            {
                string s = text.Substring(start, length);
                foreach (var f in _normalizers) s = f(s, first);
                first = false;
                if (!_splitOnMeta) { EncodeWord(s, ids); return; }
                // Metaspace split: each word keeps its leading "▁"
                int w = 0;
                for (int k = 1; k <= s.Length; k++)
                    if (k == s.Length || s[k] == Meta) { if (k > w) EncodeWordCached(s[w..k], ids); w = k; }
            },
            t => { ids.Add(t.Id); first = false; });
        return ids.ToArray();
    }

    private void EncodeWordCached(string word, List<int> ids)
    {
        if (!_cache.TryGetValue(word, out var r))
        {
            var tmp = new List<int>();
            EncodeWord(word, tmp);
            r = tmp.ToArray();
            if (Volatile.Read(ref _cacheSize) < 100_000 && _cache.TryAdd(word, r)) Interlocked.Increment(ref _cacheSize);
        }
        ids.AddRange(r);
    }

    /// <summary>BPE over one word (see <see cref="BpeMergeTable"/>), after the byte fallback of characters outside the vocabulary.</summary>
    private void EncodeWord(string word, List<int> output)
    {
        if (word.Length == 0) return;
        if (_ignoreMerges && _vocab.TryGetValue(word, out int whole)) { output.Add(whole); return; }
        // initial symbols: one per code point, byte-fallback tokens or unk for those outside the vocabulary
        var sym = new List<int>(word.Length);
        Span<byte> utf8 = stackalloc byte[4];
        for (int i = 0; i < word.Length;)
        {
            int len = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            string ch = word.Substring(i, len);
            i += len;
            if (_vocab.TryGetValue(ch, out int id)) { sym.Add(id); continue; }
            if (_byteFallback)
            {
                int n = Encoding.UTF8.GetBytes(ch, utf8);
                bool all = true;
                for (int k = 0; k < n; k++) all &= _byteIds[utf8[k]] >= 0;
                if (all) { for (int k = 0; k < n; k++) sym.Add(_byteIds[utf8[k]]); continue; }
            }
            if (_unkId is { } unk)
            {
                if (_fuseUnk && sym.Count > 0 && sym[^1] == unk) continue;
                sym.Add(unk);
            }
        }
        _merges.Apply(sym, output);
    }

    public string Decode(IReadOnlyList<int> ids)
    {
        var toks = new List<string>(ids.Count);
        foreach (int id in ids)
            if ((uint)id < (uint)_idToToken.Length && _idToToken[id] is { } t) toks.Add(t);
        foreach (var d in _decoders) toks = d(toks);
        return string.Concat(toks);
    }

    public int? TokenToId(string token) =>
        _added.TryGetValue(token, out int id) ? id : _vocab.TryGetValue(token, out id) ? id : null;
}
