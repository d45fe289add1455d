using System.Text;
using Microsoft.ML.Tokenizers;

namespace ElderCuda.IO.Tokenization;

/// <summary>
/// A SentencePiece tokenizer.model (Llama-2 style BPE with byte fallback), run by Microsoft.ML.Tokenizers'
/// <see cref="SentencePieceTokenizer"/>. SentencePiece itself does not read "&lt;s&gt;" in text as the control token;
/// HF does, so the control tokens are split off first and each stretch between them is encoded on its own
/// (with its own dummy prefix, as HF's legacy Llama tokenizer does).
/// </summary>
internal sealed class SentencePieceModelTokenizer : ITextTokenizer
{
    private readonly SentencePieceTokenizer _sp;
    private readonly AddedTokenSplitter _splitter;
    private readonly Dictionary<int, string> _specialById = new();
    private readonly Dictionary<string, int> _specialByText = new(StringComparer.Ordinal);
    private readonly string?[] _idToPiece;
    private readonly bool _chunked;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal); // Encode may run on several threads
    private int _cacheSize; // ConcurrentDictionary.Count takes every lock

    public int VocabSize { get; }
    public int? BosId { get; internal set; }
    public int? EosId { get; internal set; }

    public SentencePieceModelTokenizer(Stream model)
    {
        _sp = LlamaTokenizer.Create(model, addBeginOfSentence: false, addEndOfSentence: false);
        var specials = new List<AddedToken>();
        void AddSpecial(string? text, int id)
        {
            if (string.IsNullOrEmpty(text) || id < 0 || _specialByText.ContainsKey(text)) return;
            _specialByText[text] = id;
            _specialById[id] = text;
            specials.Add(new AddedToken(id, text, Special: true));
        }
        AddSpecial(_sp.UnknownToken, _sp.UnknownId);
        AddSpecial(_sp.BeginningOfSentenceToken, _sp.BeginningOfSentenceId);
        AddSpecial(_sp.EndOfSentenceToken, _sp.EndOfSentenceId);
        if (_sp.SpecialTokens is { } extra)
            foreach (var (text, id) in extra) AddSpecial(text, id);
        _splitter = new AddedTokenSplitter(specials);

        int max = -1;
        foreach (var id in _sp.Vocabulary.Values) max = Math.Max(max, id);
        VocabSize = max + 1;
        _idToPiece = new string?[VocabSize];
        foreach (var (piece, id) in _sp.Vocabulary) _idToPiece[id] = piece;
        // SentencePiece BPE runs over the whole text as one sequence (about 3 µs a char here). When no piece has a "▁"
        // after another character (the usual split_by_whitespace model), no merge can cross the start of a
        // "▁"-run that follows a non-"▁", so the normalized text can be cut there and each word encoded (and cached)
        // on its own with the same result.
        _chunked = !_sp.TreatWhitespaceAsSuffix && _sp.Normalizer is not null
                   && !_sp.Vocabulary.Keys.Any(p => p.TrimStart('\u2581').Contains('\u2581'));
        BosId = _sp.BeginningOfSentenceId >= 0 ? _sp.BeginningOfSentenceId : null;
        EosId = _sp.EndOfSentenceId >= 0 ? _sp.EndOfSentenceId : null;
    }

    public int[] Encode(string text)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        _splitter.Split(text,
            (start, length) => EncodeStretch(text.Substring(start, length), ids),
            t => ids.Add(t.Id));
        return ids.ToArray();
    }

    private void EncodeStretch(string stretch, List<int> ids)
    {
        if (!_chunked)
        {
            ids.AddRange(_sp.EncodeToIds(stretch, addBeginningOfSentence: false, addEndOfSentence: false));
            return;
        }
        string norm = _sp.Normalizer!.Normalize(stretch);
        int w = 0;
        for (int k = 1; k <= norm.Length; k++)
        {
            if (k < norm.Length && !(norm[k] == '\u2581' && norm[k - 1] != '\u2581')) continue;
            string word = norm[w..k];
            if (!_cache.TryGetValue(word, out var wordIds))
            {
                wordIds = _sp.EncodeToIds(word, addBeginningOfSentence: false, addEndOfSentence: false,
                    considerPreTokenization: false, considerNormalization: false).ToArray();
                if (Volatile.Read(ref _cacheSize) < 200_000 && _cache.TryAdd(word, wordIds)) Interlocked.Increment(ref _cacheSize);
            }
            ids.AddRange(wordIds);
            w = k;
        }
    }

    public string Decode(IReadOnlyList<int> ids)
    {
        var sb = new StringBuilder();
        var run = new List<int>();
        void Flush()
        {
            if (run.Count == 0) return;
            // SentencePiece drops the leading "▁" of what it decodes; HF's Llama decoder strips only the start of the
            // whole text, so a stretch after a special token keeps its space.
            if (sb.Length > 0 && (uint)run[0] < (uint)_idToPiece.Length && _idToPiece[run[0]] is { } p && p.StartsWith('\u2581')) sb.Append(' ');
            sb.Append(_sp.Decode(run, considerSpecialTokens: false));
            run.Clear();
        }
        foreach (int id in ids)
        {
            if (_specialById.TryGetValue(id, out var special)) { Flush(); sb.Append(special); }
            else run.Add(id);
        }
        Flush();
        return sb.ToString();
    }

    public int? TokenToId(string token)
    {
        if (_specialByText.TryGetValue(token, out int id)) return id;
        return _sp.Vocabulary.TryGetValue(token, out id) ? id : null;
    }
}
