namespace ElderCuda.IO.Tokenization;

/// <summary>An entry of tokenizer.json "added_tokens" (or a SentencePiece control piece).</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool LStrip = false, bool RStrip = false, bool SingleWord = false)
{
    /// <summary>id → token text over the vocabulary and the added tokens (which win); its length is the vocabulary size.</summary>
    public static string?[] IdToToken(IReadOnlyDictionary<string, int> vocab, IEnumerable<AddedToken> added)
    {
        int max = -1;
        foreach (var id in vocab.Values) max = Math.Max(max, id);
        foreach (var t in added) max = Math.Max(max, t.Id);
        var table = new string?[max + 1];
        foreach (var (tok, id) in vocab) table[id] = tok;
        foreach (var t in added) table[t.Id] = t.Content;
        return table;
    }
}

/// <summary>
/// Splits text on added tokens before the model sees it, as HF tokenizers does: leftmost match first,
/// the longest token where several start at the same place; lstrip/rstrip swallow neighbouring whitespace,
/// single_word only matches a token that is not inside a word. Everything between matches goes to the model.
/// </summary>
internal sealed class AddedTokenSplitter
{
    private readonly Dictionary<char, AddedToken[]> _byFirstChar;

    public AddedTokenSplitter(IEnumerable<AddedToken> tokens)
    {
        _byFirstChar = tokens.Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
    }

    public bool IsEmpty => _byFirstChar.Count == 0;

    /// <summary>Calls <paramref name="onText"/> for each plain stretch and <paramref name="onToken"/> for each added token, in order.</summary>
    public void Split(string text, Action<int, int> onText, Action<AddedToken> onToken)
    {
        if (IsEmpty) { if (text.Length > 0) onText(0, text.Length); return; }
        int plainStart = 0, i = 0;
        while (i < text.Length)
        {
            if (_byFirstChar.TryGetValue(text[i], out var candidates))
            {
                AddedToken? hit = null;
                foreach (var t in candidates)
                {
                    if (string.CompareOrdinal(text, i, t.Content, 0, t.Content.Length) != 0) continue;
                    if (t.SingleWord && !IsWholeWord(text, i, t.Content.Length)) continue;
                    hit = t; break;
                }
                if (hit is not null)
                {
                    int start = i, end = i + hit.Content.Length;
                    if (hit.LStrip) while (start > plainStart && char.IsWhiteSpace(text[start - 1])) start--;
                    if (hit.RStrip) while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
                    if (start > plainStart) onText(plainStart, start - plainStart);
                    onToken(hit);
                    plainStart = i = end;
                    continue;
                }
            }
            i++;
        }
        if (plainStart < text.Length) onText(plainStart, text.Length - plainStart);
    }

    private static bool IsWholeWord(string s, int start, int len)
    {
        static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c == '_';
        bool leftOk = start == 0 || !IsWordChar(s[start - 1]) || !IsWordChar(s[start]);
        int end = start + len;
        bool rightOk = end == s.Length || !IsWordChar(s[end]) || !IsWordChar(s[end - 1]);
        return leftOk && rightOk;
    }
}
