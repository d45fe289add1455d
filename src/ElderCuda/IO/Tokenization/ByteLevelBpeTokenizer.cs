using System.Text;
using Microsoft.ML.Tokenizers;

namespace ElderCuda.IO.Tokenization;

/// <summary>
/// Byte-level BPE (GPT-2, OPT, Phi, Llama-3, Qwen2 and the bundled models). Added tokens are split off first
/// (<see cref="AddedTokenSplitter"/>), each remaining stretch is pre-tokenized here (<see cref="Gpt2PreTokenizer"/> or a
/// Split regex) and each word BPE-merged by Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/> in byte-level mode
/// (long words by <see cref="BpeMergeTable"/>). Decoding is done here so that it matches HF's ByteLevel decoder
/// exactly (bytes joined across tokens, then UTF-8 decoded with U+FFFD for invalid sequences).
/// Thread-safe for concurrent Encode/Decode once built.
/// </summary>
internal sealed class ByteLevelBpeTokenizer : ITextTokenizer
{
    private readonly BpeTokenizer _bpe;
    private readonly AddedTokenSplitter _splitter;
    private readonly Dictionary<string, int> _added;
    private readonly string?[] _idToToken;
    private readonly bool _addPrefixSpace;
    private readonly Func<string, string>? _normalize;
    private readonly PreTokenizer _preTokenizer;
    private readonly bool _ignoreMerges;
    private readonly IReadOnlyDictionary<string, int> _vocab;
    private readonly BpeMergeTable _merges;
    /// <summary>Words longer than this (chars) are merged by <see cref="BpeMergeTable"/>; settable so tests can send every word there.</summary>
    internal int LongWord { get; set; } = 256;
    private static readonly char[] ByteToChar = BuildByteToChar();
    private static readonly Dictionary<char, byte> CharToByte = BuildCharToByte();

    public int VocabSize { get; }
    public int? BosId { get; internal set; }
    public int? EosId { get; internal set; }

    public ByteLevelBpeTokenizer(string source, IReadOnlyDictionary<string, int> vocab, IReadOnlyList<(string A, string B)> merges,
        IReadOnlyList<AddedToken> addedTokens, PreTokenizer preTokenizer, bool addPrefixSpace, Func<string, string>? normalize,
        bool ignoreMerges)
    {
        var options = new BpeOptions(vocab)
        {
            Merges = merges.Select(m => m.A + " " + m.B),
            ByteLevel = true,
            PreTokenizer = preTokenizer,
        };
        _bpe = BpeTokenizer.Create(options);
        _splitter = new AddedTokenSplitter(addedTokens);
        _added = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var t in addedTokens) _added[t.Content] = t.Id;
        _addPrefixSpace = addPrefixSpace;
        _normalize = normalize;
        _preTokenizer = preTokenizer;
        _ignoreMerges = ignoreMerges;
        _vocab = vocab;
        _merges = new BpeMergeTable(source, vocab, merges);

        _idToToken = AddedToken.IdToToken(vocab, addedTokens);
        VocabSize = _idToToken.Length;
    }

    public int[] Encode(string text)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        _splitter.Split(text,
            (start, length) =>
            {
                string piece = text.Substring(start, length);
                if (_normalize is not null) piece = _normalize(piece);
                // HF ByteLevel(add_prefix_space) prepends a space unless the piece already starts with one
                if (_addPrefixSpace && !piece.StartsWith(' ')) piece = " " + piece;
                EncodeWords(piece, ids);
            },
            t => ids.Add(t.Id));
        return ids.ToArray();
    }

    /// <summary>
    /// Pre-tokenizes and BPE-encodes each word. Microsoft.ML.Tokenizers merges a word in O(n²) (200 000 "-" take
    /// seconds), so words longer than <see cref="LongWord"/> chars go through <see cref="BpeMergeTable"/> instead;
    /// and HF's ignore_merges (Llama-3: a word that is a whole vocabulary entry is taken as is) has no ML switch.
    /// </summary>
    private void EncodeWords(string piece, List<int> ids)
    {
        foreach (var (offset, length) in _preTokenizer.PreTokenize(piece))
        {
            var word = piece.AsSpan(offset, length);
            if (!_ignoreMerges && length <= LongWord)
            {
                ids.AddRange(_bpe.EncodeToIds(word, considerPreTokenization: false, considerNormalization: false));
                continue;
            }
            var bytes = Encoding.UTF8.GetBytes(word.ToArray());
            var mapped = new char[bytes.Length];
            for (int k = 0; k < bytes.Length; k++) mapped[k] = ByteToChar[bytes[k]];
            if (_ignoreMerges && _vocab.TryGetValue(new string(mapped), out int whole)) { ids.Add(whole); continue; }
            if (length <= LongWord) { ids.AddRange(_bpe.EncodeToIds(word, considerPreTokenization: false, considerNormalization: false)); continue; }
            var symbols = new List<int>(mapped.Length);
            foreach (char c in mapped)
                if (_vocab.TryGetValue(c.ToString(), out int id)) symbols.Add(id); // a byte missing from the vocabulary is dropped, as HF does without unk
            _merges.Apply(symbols, ids);
        }
    }

    public string Decode(IReadOnlyList<int> ids)
    {
        var bytes = new List<byte>(ids.Count * 4);
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_idToToken.Length || _idToToken[id] is not { } tok) continue; // unknown ids decode to nothing, as in HF
            // HF ByteLevel decoder: map each char back to its byte; a token with a char outside the byte alphabet
            // (an added token such as "<|im_start|> x") is taken as its own UTF-8 bytes
            int mark = bytes.Count;
            bool allMapped = true;
            foreach (char c in tok)
            {
                if (CharToByte.TryGetValue(c, out byte b)) bytes.Add(b);
                else { allMapped = false; break; }
            }
            if (!allMapped)
            {
                bytes.RemoveRange(mark, bytes.Count - mark);
                bytes.AddRange(Encoding.UTF8.GetBytes(tok));
            }
        }
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
    }

    public int? TokenToId(string token)
    {
        if (_added.TryGetValue(token, out int id)) return id;
        return _bpe.Vocabulary.TryGetValue(token, out id) ? id : null;
    }

    private static char[] BuildByteToChar()
    {
        var table = new char[256];
        foreach (var (c, b) in BuildCharToByte()) table[b] = c;
        return table;
    }

    /// <summary>GPT-2's bytes_to_unicode table, inverted: printable Latin-1 bytes map to themselves, the rest to U+0100 onwards.</summary>
    private static Dictionary<char, byte> BuildCharToByte()
    {
        var map = new Dictionary<char, byte>(256);
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            char c = printable ? (char)b : (char)(256 + n++);
            map[c] = (byte)b;
        }
        return map;
    }
}
