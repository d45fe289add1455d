using System.Text.Json;

namespace ElderCuda.IO.Tokenization;

/// <summary>Llama-style tokenizer.json: BPE over "▁"-marked text with byte fallback.</summary>
internal sealed class MetaspaceBpeTokenizer : ITextTokenizer
{
    public int VocabSize { get; }
    public int? BosId { get; internal set; }
    public int? EosId { get; internal set; }

    private MetaspaceBpeTokenizer() { }

    public static MetaspaceBpeTokenizer FromJson(string path, Dictionary<string, int> vocab, List<(string, string)> merges,
        List<AddedToken> added, JsonElement? norm, JsonElement? pre, JsonElement? dec, bool byteFallback, string? unk, bool ignoreMerges)
        => throw new TokenizerException($"'{path}': Metaspace (Llama-style) tokenizer.json is not supported yet; use tokenizer.model.");

    public int[] Encode(string text) => throw new NotImplementedException();
    public string Decode(IReadOnlyList<int> ids) => throw new NotImplementedException();
    public int? TokenToId(string token) => throw new NotImplementedException();
}
