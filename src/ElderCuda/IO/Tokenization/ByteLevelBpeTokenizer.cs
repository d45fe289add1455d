using System.Text;
using Microsoft.ML.Tokenizers;

namespace ElderCuda.IO.Tokenization;

/// <summary>
/// Byte-level BPE (GPT-2, OPT, Phi, Llama-3, Qwen2 and the bundled models). Added tokens are split off first
/// (<see cref="AddedTokenSplitter"/>), each remaining stretch is pre-tokenized and BPE-merged by Microsoft.ML.Tokenizers'
/// <see cref="BpeTokenizer"/> in byte-level mode, and decoding is done here so that it matches HF's ByteLevel decoder
/// exactly (bytes joined across tokens, then UTF-8 decoded with U+FFFD for invalid sequences).
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
    private static readonly char[] ByteToChar = BuildByteToChar();
    private static readonly Dictionary<char, byte> CharToByte = BuildCharToByte();

    public int VocabSize { get; }
    public int? BosId { get; internal set; }
    public int? EosId { get; internal set; }

    public ByteLevelBpeTokenizer(IReadOnlyDictionary<string, int> vocab, IReadOnlyList<(string A, string B)> merges,
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

        int max = -1;
        foreach (var id in vocab.Values) max = Math.Max(max, id);
        foreach (var t in addedTokens) max = Math.Max(max, t.Id);
        VocabSize = max + 1;
        _idToToken = new string?[VocabSize];
        foreach (var (tok, id) in vocab) _idToToken[id] = tok;
        foreach (var t in addedTokens) _idToToken[t.Id] = t.Content;
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
                if (!_ignoreMerges) ids.AddRange(_bpe.EncodeToIds(piece, considerPreTokenization: true, considerNormalization: false));
                else EncodeIgnoringMerges(piece, ids);
            },
            t => ids.Add(t.Id));
        return ids.ToArray();
    }

    /// <summary>
    /// HF BPE with ignore_merges (Llama-3): a pre-token that is a whole vocabulary entry is taken as is, without merging.
    /// Microsoft.ML.Tokenizers' BPE has no such switch, so that check is done here.
    /// </summary>
    private void EncodeIgnoringMerges(string piece, List<int> ids)
    {
        foreach (var (offset, length) in _preTokenizer.PreTokenize(piece))
        {
            string word = piece.Substring(offset, length);
            var bytes = Encoding.UTF8.GetBytes(word);
            var mapped = new char[bytes.Length];
            for (int k = 0; k < bytes.Length; k++) mapped[k] = ByteToChar[bytes[k]];
            if (_vocab.TryGetValue(new string(mapped), out int id)) ids.Add(id);
            else ids.AddRange(_bpe.EncodeToIds(word, considerPreTokenization: false, considerNormalization: false));
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
