using System.Text.Json;
using System.Text.Json.Nodes;
using ElderCuda.IO.Tokenization;
using Microsoft.ML.Tokenizers;

namespace ElderCuda.Tests.IO;

/// <summary>
/// Llama-style tokenizer.json (BPE over "▁" text with byte fallback). No real such file ships with the repo, so one is
/// made from the SentencePiece fixture the way HF's LlamaConverter does it: the same pieces and ids, and merges
/// (a, b) for every piece a+b whose halves are pieces, ranked by the merged piece's id (SentencePiece BPE scores
/// fall with the id). Expected ids and text still come from reference_ids.json.
/// </summary>
public class TokenizerMetaspaceTests
{
    public enum Style { LegacyNormalizer, MetaspacePreTokenizer }

    private static string MakeTokenizerJson(Style style)
    {
        using var model = File.OpenRead(Path.Combine(TokenizerRepo.SpFixture, "tokenizer.model"));
        var sp = LlamaTokenizer.Create(model, false, false);
        var vocab = sp.Vocabulary.OrderBy(kv => kv.Value).ToList();
        static bool Special(string p) => p is "<unk>" or "<s>" or "</s>" || (p.Length == 6 && p.StartsWith("<0x"));
        var normal = vocab.Where(kv => !Special(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
        var merges = new JsonArray();
        foreach (var (piece, _) in vocab.Where(kv => !Special(kv.Key)))
        {
            var splits = new List<(int, int, string, string)>();
            for (int k = 1; k < piece.Length; k++)
            {
                if (char.IsLowSurrogate(piece[k])) continue;
                string a = piece[..k], b = piece[k..];
                if (normal.TryGetValue(a, out int ia) && normal.TryGetValue(b, out int ib)) splits.Add((ia, ib, a, b));
            }
            foreach (var (_, _, a, b) in splits.OrderBy(s => s.Item1).ThenBy(s => s.Item2)) merges.Add(new JsonArray(a, b));
        }
        var vocabObj = new JsonObject();
        foreach (var (piece, id) in vocab) vocabObj[piece] = id;
        JsonObject Added(int id, string content) => new()
        {
            ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
            ["normalized"] = false, ["special"] = true,
        };
        var decoder = JsonNode.Parse("""
            {"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},
             {"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]}
            """);
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(Added(0, "<unk>"), Added(1, "<s>"), Added(2, "</s>")),
            ["normalizer"] = style == Style.LegacyNormalizer
                ? JsonNode.Parse("""{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]}""")
                : null,
            ["pre_tokenizer"] = style == Style.MetaspacePreTokenizer
                ? JsonNode.Parse("""{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}""")
                : null,
            ["decoder"] = decoder,
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = "<unk>", ["fuse_unk"] = true, ["byte_fallback"] = true,
                ["ignore_merges"] = false, ["vocab"] = vocabObj, ["merges"] = merges,
            },
        };
        return root.ToJsonString();
    }

    private static ITextTokenizer Load(Style style)
    {
        string dir = Directory.CreateTempSubdirectory("tok-metaspace").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"), MakeTokenizerJson(style));
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"bos_token": "<s>", "eos_token": "</s>"}""");
            return TokenizerLoader.Load(dir);
        }
        finally { Directory.Delete(dir, true); }
    }

    private static readonly Dictionary<Style, Lazy<ITextTokenizer>> Toks = Enum.GetValues<Style>()
        .ToDictionary(s => s, s => new Lazy<ITextTokenizer>(() => Load(s)));

    [Theory]
    [InlineData(Style.LegacyNormalizer)]
    [InlineData(Style.MetaspacePreTokenizer)]
    public void MatchesSentencePieceReference(Style style)
    {
        var tok = Toks[style].Value;
        var items = JsonDocument.Parse(File.ReadAllText(Path.Combine(TokenizerRepo.SpFixture, "reference_ids.json"))).RootElement.GetProperty("items");
        foreach (var item in items.EnumerateArray())
        {
            var withBos = TokenizerRepo.Ints(item.GetProperty("ids_with_bos"));
            string text = item.GetProperty("text").GetString()!;
            Assert.Equal(withBos[1..], tok.Encode(text));
            Assert.Equal(item.GetProperty("decoded").GetString(), tok.Decode(withBos[1..]));
        }
        Assert.Equal(1, tok.BosId);
        Assert.Equal(2, tok.EosId);
        Assert.Equal(1024, tok.VocabSize);
    }

    [Theory]
    [InlineData(Style.LegacyNormalizer)]
    [InlineData(Style.MetaspacePreTokenizer)]
    public void AgreesWithTheSentencePieceModelOnTheHeldOutCorpus(Style style)
    {
        // a cross-check of two independent implementations (ours over tokenizer.json, ML.Tokenizers over
        // tokenizer.model) on 100 KB of real text with unicode, digits and newlines
        string text = File.ReadAllText(TokenizerRepo.PathOf("data", "corpus-heldout.txt"))[..100_000].Replace("<|endoftext|>", "");
        var viaModel = TokenizerLoader.Load(TokenizerRepo.SpFixture).Encode(text);
        var viaJson = Toks[style].Value.Encode(text);
        Assert.Equal(viaModel, viaJson);
        Assert.Equal(text, Toks[style].Value.Decode(viaJson));
    }

    [Fact]
    public void SpecialTokensInTextAreSplitOff()
    {
        var tok = Toks[Style.LegacyNormalizer].Value;
        Assert.Equal([.. tok.Encode("a"), 2, .. tok.Encode("b")], tok.Encode("a</s>b"));
        Assert.Equal("<s> It", tok.Decode([1, .. tok.Encode("It")]));
    }
}
