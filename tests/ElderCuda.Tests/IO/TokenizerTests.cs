using System.Diagnostics;
using System.Text.Json;
using CsCheck;
using ElderCuda.IO.Tokenization;

namespace ElderCuda.Tests.IO;

/// <summary>Finds files of the repository by walking up from the test binary to the folder holding ELDeR.Cuda.sln.</summary>
internal static class TokenizerRepo
{
    private static readonly Lazy<string> RootLazy = new(() =>
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "ELDeR.Cuda.sln"))) return d.FullName;
        throw new InvalidOperationException("ELDeR.Cuda.sln not found above " + AppContext.BaseDirectory);
    });

    public static string Root => RootLazy.Value;
    public static string PathOf(params string[] parts) => Path.Combine([Root, .. parts]);
    public static string Llama12L => PathOf("models", "llama-12L");
    public static string SpFixture => PathOf("tests", "ElderCuda.Tests", "fixtures", "sentencepiece-bpe");

    public static JsonElement Reference(string modelDir) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(modelDir, "reference.json"))).RootElement;

    public static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
}

public class TokenizerByteLevelTests
{
    private static readonly Lazy<ITextTokenizer> Tok = new(() => TokenizerLoader.Load(TokenizerRepo.Llama12L));

    [Fact]
    public void WikitextFirst64IdsMatchHuggingFace()
    {
        var expected = TokenizerRepo.Ints(TokenizerRepo.Reference(TokenizerRepo.Llama12L).GetProperty("wikitext2_first_64_ids"));
        Assert.Equal(64, expected.Length);
        string head = File.ReadAllText(TokenizerRepo.PathOf("tests", "ElderCuda.Tests", "fixtures", "wiki.test.head8k.raw"));
        var ids = Tok.Value.Encode(head);
        Assert.True(ids.Length > 64);
        Assert.Equal(expected, ids.Take(64).ToArray());
    }

    [Fact]
    public void GreedyPromptAndContinuationMatchHuggingFace()
    {
        var r = TokenizerRepo.Reference(TokenizerRepo.Llama12L);
        string prompt = r.GetProperty("greedy_prompt").GetString()!;
        string text = r.GetProperty("greedy_text").GetString()!;
        var ids = TokenizerRepo.Ints(r.GetProperty("greedy_ids"));
        // greedy_ids are the prompt's ids followed by generated ids; greedy_text is their decoding
        var promptIds = Tok.Value.Encode(prompt);
        Assert.Equal(ids.Take(promptIds.Length).ToArray(), promptIds);
        Assert.Equal(text, Tok.Value.Decode(ids));
    }

    [Fact]
    public void EndOfTextIsTheSpecialToken()
    {
        var tok = Tok.Value;
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TokenizerRepo.Llama12L, "tokenizer.json")));
        int eot = doc.RootElement.GetProperty("added_tokens").EnumerateArray()
            .Single(t => t.GetProperty("content").GetString() == "<|endoftext|>").GetProperty("id").GetInt32();

        Assert.Equal(eot, tok.TokenToId("<|endoftext|>"));
        Assert.Equal([eot], tok.Encode("<|endoftext|>"));
        var ids = tok.Encode("the end.<|endoftext|>The start");
        Assert.Equal(1, ids.Count(i => i == eot));
        int at = Array.IndexOf(ids, eot);
        Assert.Equal(tok.Encode("the end."), ids[..at]);
        Assert.Equal(tok.Encode("The start"), ids[(at + 1)..]);
        Assert.Equal("the end.<|endoftext|>The start", tok.Decode(ids));
        // tokenizer_config.json names <|endoftext|> as both bos and eos
        Assert.Equal(eot, tok.BosId);
        Assert.Equal(eot, tok.EosId);
        Assert.Equal(4096, tok.VocabSize); // config.json vocab_size
    }

    [Fact]
    public void HeldOutCorpusEndOfTextMarkersBecomeSpecialIds()
    {
        string text = File.ReadAllText(TokenizerRepo.PathOf("data", "corpus-heldout.txt"));
        int markers = (text.Length - text.Replace("<|endoftext|>", "").Length) / "<|endoftext|>".Length;
        Assert.True(markers > 0);
        var tok = Tok.Value;
        var sw = Stopwatch.StartNew();
        var ids = tok.Encode(text);
        sw.Stop();
        Assert.Equal(markers, ids.Count(i => i == tok.TokenToId("<|endoftext|>")));
        Assert.Equal(text, tok.Decode(ids));
        TestContext.Current.SendDiagnosticMessage($"corpus-heldout.txt: {text.Length} chars -> {ids.Length} ids in {sw.ElapsedMilliseconds} ms");
    }

    [Fact]
    public void RoundTripsWikitextHeadAndUnicode()
    {
        var tok = Tok.Value;
        string head = File.ReadAllText(TokenizerRepo.PathOf("tests", "ElderCuda.Tests", "fixtures", "wiki.test.head8k.raw"));
        Assert.Equal(head, tok.Decode(tok.Encode(head)));
        string uni = "Ünïcödé — “quotes” 日本語のテキスト, emoji 😀👍🏽, math 𝐀𝐁𝐂 ∑ x², tabs\tand\r\nnewlines   ";
        var ids = tok.Encode(uni);
        Assert.Equal(uni, tok.Decode(ids));
        Assert.True(ids.Length >= uni.Length / 4);
    }

    [Fact]
    public void RoundTripsRandomStrings()
    {
        var tok = Tok.Value;
        // any valid UTF-16 string: BMP chars outside the surrogate range plus whole astral code points
        var codePoint = Gen.Frequency(
            (6, Gen.Char['\0', '\x7f'].Select(c => c.ToString())),
            (3, Gen.Char['\x80', '\ud7ff'].Select(c => c.ToString())),
            (1, Gen.Int[0x10000, 0x10FFFF].Select(char.ConvertFromUtf32)));
        var text = codePoint.Array[0, 40].Select(a => string.Concat(a));
        text.Sample(s => Assert.Equal(s, tok.Decode(tok.Encode(s))), iter: 2000);
    }

    [Fact]
    public void SpacesAndContractionsSplitLikeGpt2()
    {
        // the GPT-2 pattern gives a run of spaces before a word all but its last space, which joins the word:
        // "a   b" = "a", "  ", " b"; so encoding the pieces one by one must give the same ids
        var tok = Tok.Value;
        Assert.Equal([.. tok.Encode("a"), .. tok.Encode("  "), .. tok.Encode(" b")], tok.Encode("a   b"));
        Assert.Equal([.. tok.Encode("it"), .. tok.Encode("'s")], tok.Encode("it's"));
        Assert.Equal([.. tok.Encode("x"), .. tok.Encode("\n"), .. tok.Encode("\n"), .. tok.Encode("y")], tok.Encode("x\n\ny"));
    }

    [Theory]
    // Llama-3 / Qwen2 layout: a Split pre-tokenizer with the regex, then ByteLevel without its own regex.
    // With the GPT-2 pattern this is the same tokenizer, so the HF reference ids must still come out.
    [InlineData("""{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]}""", false)]
    [InlineData("""{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}""", true)]
    public void SplitRegexLayoutAndIgnoreMergesGiveTheReferenceIds(string preTokenizer, bool ignoreMerges)
    {
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(TokenizerRepo.Llama12L, "tokenizer.json")))!;
        json["pre_tokenizer"] = System.Text.Json.Nodes.JsonNode.Parse(preTokenizer);
        json["model"]!["ignore_merges"] = ignoreMerges;
        string dir = Directory.CreateTempSubdirectory("tok-split").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"), json.ToJsonString());
            var tok = TokenizerLoader.Load(dir);
            var expected = TokenizerRepo.Ints(TokenizerRepo.Reference(TokenizerRepo.Llama12L).GetProperty("wikitext2_first_64_ids"));
            string head = File.ReadAllText(TokenizerRepo.PathOf("tests", "ElderCuda.Tests", "fixtures", "wiki.test.head8k.raw"));
            var ids = tok.Encode(head);
            Assert.Equal(expected, ids.Take(64).ToArray());
            Assert.Equal(head, tok.Decode(ids));
            Assert.Equal(Tok.Value.Encode(head), ids);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void LongWordMergerGivesTheReferenceIds()
    {
        // words over 256 chars bypass ML.Tokenizers' O(n²) merge; sending every word that way must change nothing
        var tok = (ByteLevelBpeTokenizer)TokenizerLoader.Load(TokenizerRepo.Llama12L);
        tok.LongWord = 0;
        var expected = TokenizerRepo.Ints(TokenizerRepo.Reference(TokenizerRepo.Llama12L).GetProperty("wikitext2_first_64_ids"));
        string head = File.ReadAllText(TokenizerRepo.PathOf("tests", "ElderCuda.Tests", "fixtures", "wiki.test.head8k.raw"));
        Assert.Equal(expected, tok.Encode(head).Take(64).ToArray());
        string heldout = File.ReadAllText(TokenizerRepo.PathOf("data", "corpus-heldout.txt"))[..200_000];
        Assert.Equal(Tok.Value.Encode(heldout), tok.Encode(heldout));
        string dashes = new('-', 5000);
        Assert.Equal(dashes, Tok.Value.Decode(Tok.Value.Encode(dashes)));
    }

    [Fact]
    public void VocabJsonAndMergesTxtGiveTheSameTokenizer()
    {
        // a folder with only vocab.json + merges.txt (slow GPT-2 files) must tokenize like tokenizer.json
        string dir = Directory.CreateTempSubdirectory("tok-vm").FullName;
        try
        {
            foreach (var f in new[] { "vocab.json", "merges.txt" })
                File.Copy(Path.Combine(TokenizerRepo.Llama12L, f), Path.Combine(dir, f));
            var vm = TokenizerLoader.Load(dir);
            string head = File.ReadAllText(TokenizerRepo.PathOf("tests", "ElderCuda.Tests", "fixtures", "wiki.test.head8k.raw"));
            Assert.Equal(Tok.Value.Encode(head + "<|endoftext|>"), vm.Encode(head + "<|endoftext|>"));
        }
        finally { Directory.Delete(dir, true); }
    }
}

public class TokenizerSentencePieceTests
{
    private static readonly Lazy<ITextTokenizer> Tok = new(() => TokenizerLoader.Load(TokenizerRepo.SpFixture));

    public static TheoryData<int> Items()
    {
        var data = new TheoryData<int>();
        var items = JsonDocument.Parse(File.ReadAllText(Path.Combine(TokenizerRepo.SpFixture, "reference_ids.json"))).RootElement.GetProperty("items");
        for (int i = 0; i < items.GetArrayLength(); i++) data.Add(i);
        return data;
    }

    private static JsonElement Item(int i) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(TokenizerRepo.SpFixture, "reference_ids.json"))).RootElement.GetProperty("items")[i];

    [Theory]
    [MemberData(nameof(Items))]
    public void EncodeMatchesSentencePiece(int i)
    {
        var item = Item(i);
        var withBos = TokenizerRepo.Ints(item.GetProperty("ids_with_bos"));
        Assert.Equal(1, withBos[0]);
        Assert.Equal(withBos[1..], Tok.Value.Encode(item.GetProperty("text").GetString()!));
    }

    [Theory]
    [MemberData(nameof(Items))]
    public void DecodeMatchesSentencePiece(int i)
    {
        var item = Item(i);
        var withBos = TokenizerRepo.Ints(item.GetProperty("ids_with_bos"));
        Assert.Equal(item.GetProperty("decoded").GetString(), Tok.Value.Decode(withBos[1..]));
    }

    [Fact]
    public void SpecialTokensAndIds()
    {
        var tok = Tok.Value;
        Assert.Equal(1, tok.BosId);     // reference_ids.json: ids_with_bos start with 1
        Assert.Equal(1, tok.TokenToId("<s>"));
        Assert.Equal(tok.EosId, tok.TokenToId("</s>"));
        Assert.NotEqual(tok.BosId, tok.EosId);
        Assert.Equal(1024, tok.VocabSize); // reference_ids.json note: vocab 1024
        var ids = tok.Encode("a</s>a");
        Assert.Equal([.. tok.Encode("a"), tok.EosId!.Value, .. tok.Encode("a")], ids);
    }
}

public class TokenizerErrorTests
{
    [Fact]
    public void FolderWithoutTokenizerFilesIsAClearError()
    {
        string dir = Directory.CreateTempSubdirectory("tok-empty").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "config.json"), "{}");
            var e = Assert.Throws<TokenizerException>(() => TokenizerLoader.Load(dir));
            Assert.Contains(dir, e.Message);
            Assert.Contains("tokenizer.json", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void MissingFolderIsAClearError()
    {
        string dir = Path.Combine(Path.GetTempPath(), "no-such-model-" + Guid.NewGuid());
        var e = Assert.Throws<TokenizerException>(() => TokenizerLoader.Load(dir));
        Assert.Contains(dir, e.Message);
    }

    [Theory]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0")]   // cut off
    [InlineData("not json at all")]
    [InlineData("{\"version\": \"1.0\"}")]                                  // no model
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}}")] // bad merge
    [InlineData("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}")] // merge result not in vocab
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"zero\"}, \"merges\": []}}")]               // id not a number
    [InlineData("{\"added_tokens\": [{\"content\": \"x\"}], \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}")] // added token without id
    public void CorruptTokenizerJsonIsAClearError(string json)
    {
        string dir = Directory.CreateTempSubdirectory("tok-bad").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"), json);
            var e = Assert.Throws<TokenizerException>(() => TokenizerLoader.Load(dir));
            Assert.Contains(Path.Combine(dir, "tokenizer.json"), e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void CorruptSentencePieceModelIsAClearError()
    {
        string dir = Directory.CreateTempSubdirectory("tok-badsp").FullName;
        try
        {
            File.WriteAllBytes(Path.Combine(dir, "tokenizer.model"), [0xFF, 0xFF, 0x01, 0x02, 0x03]);
            var e = Assert.Throws<TokenizerException>(() => TokenizerLoader.Load(dir));
            Assert.Contains("tokenizer.model", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}

public class TokenizerConcurrencyTests
{
    [Theory]
    [InlineData("models/llama-12L")]
    [InlineData("tests/ElderCuda.Tests/fixtures/sentencepiece-bpe")]
    public void ParallelEncodingGivesTheSameIdsAsSequential(string dir)
    {
        // perplexity evaluation may tokenize several files at once with one tokenizer
        var tok = TokenizerLoader.Load(TokenizerRepo.PathOf(dir.Split('/')));
        string text = File.ReadAllText(TokenizerRepo.PathOf("data", "corpus-heldout.txt"));
        var chunks = Enumerable.Range(0, 16).Select(i => text.Substring(i * 20_000, 20_000)).ToArray();
        var sequential = chunks.Select(tok.Encode).ToArray();
        var fresh = TokenizerLoader.Load(TokenizerRepo.PathOf(dir.Split('/')));
        var parallel = new int[chunks.Length][];
        Parallel.For(0, chunks.Length, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i => parallel[i] = fresh.Encode(chunks[i]));
        for (int i = 0; i < chunks.Length; i++) Assert.Equal(sequential[i], parallel[i]);
    }
}
