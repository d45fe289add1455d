using System.Text.Json;
using ElderCuda.Backends.Cpu;
using ElderCuda.Eval;
using ElderCuda.IO.Tokenization;
using ElderCuda.Model;

namespace ElderCuda.Tests.IO;

/// <summary>
/// llama2.c's tokenizer files. fixtures/llama2c-tokenizer holds the SentencePiece model of fixtures/sentencepiece-bpe
/// written in llama2.c's format (both byte-piece spellings; `make.py` there), so the ids the sentencepiece library
/// gave for that model are the expected ids. stories260K (llama2.c's own tok512.bin and the HF form of its weights)
/// is checked against the greedy sample published in llama2.c's doc/stories260K.md.
/// </summary>
public class Llama2cTokenizerTests
{
    static IEnumerable<JsonElement> SentencePieceItems() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(TokenizerRepo.SpFixture, "reference_ids.json"))).RootElement.GetProperty("items").EnumerateArray();

    [Theory]
    [InlineData("tok1024.bin")]
    [InlineData("tok1024-chr.bin")]
    public void EncodeAndDecodeMatchSentencePiece(string file)
    {
        var tok = Llama2cTokenizerFile.Load(TestPaths.Fixture("llama2c-tokenizer", file));
        Assert.Equal(1024, tok.VocabSize);
        Assert.Equal(1, tok.BosId);
        Assert.Equal(2, tok.EosId);
        int n = 0;
        foreach (var item in SentencePieceItems())
        {
            var expected = TokenizerRepo.Ints(item.GetProperty("ids_with_bos"))[1..];
            Assert.Equal(expected, tok.Encode(item.GetProperty("text").GetString()!));
            Assert.Equal(item.GetProperty("decoded").GetString(), tok.Decode(expected));
            n++;
        }
        Assert.True(n > 0);
    }

    [Fact]
    public void LoaderFindsATokFileInAModelFolder()
    {
        var dir = Directory.CreateTempSubdirectory("eldr-tokbin-").FullName;
        try
        {
            File.Copy(TestPaths.Fixture("llama2c-tokenizer", "tok1024.bin"), Path.Combine(dir, "tok1024.bin"));
            var tok = TokenizerLoader.Load(dir);
            var item = SentencePieceItems().First();
            Assert.Equal(TokenizerRepo.Ints(item.GetProperty("ids_with_bos"))[1..], tok.Encode(item.GetProperty("text").GetString()!));
            File.Copy(TestPaths.Fixture("llama2c-tokenizer", "tok1024-chr.bin"), Path.Combine(dir, "tok2.bin"));
            var e = Assert.Throws<TokenizerException>(() => TokenizerLoader.Load(dir));
            Assert.Contains("several llama2.c tokenizer files", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void TruncatedOrCorruptFilesAreClearErrors()
    {
        var bytes = File.ReadAllBytes(TestPaths.Fixture("llama2c-tokenizer", "tok1024.bin"));
        var dir = Directory.CreateTempSubdirectory("eldr-tokbin-").FullName;
        try
        {
            string path = Path.Combine(dir, "tokenizer.bin");
            File.WriteAllBytes(path, bytes[..(bytes.Length - 3)]);
            var e = Assert.Throws<TokenizerException>(() => TokenizerLoader.Load(dir));
            Assert.Contains("tokenizer.bin", e.Message);
            Assert.Contains("piece 1023", e.Message);
            var bad = (byte[])bytes.Clone();
            BitConverter.GetBytes(1000u).CopyTo(bad, 8);      // piece 0's length, past the header's maximum
            File.WriteAllBytes(path, bad);
            e = Assert.Throws<TokenizerException>(() => TokenizerLoader.Load(dir));
            Assert.Contains("piece 0", e.Message);
            File.WriteAllBytes(path, bytes[..2]);
            e = Assert.Throws<TokenizerException>(() => TokenizerLoader.Load(dir));
            Assert.Contains("too short", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>llama2.c doc/stories260K.md: `./run stories260K.bin -z tok512.bin -t 0.0` (greedy from BOS), its first lines.</summary>
    const string Stories260KGreedy =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. " +
        "She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do.";

    [Fact]
    public void Stories260KGreedySampleMatchesLlama2c()
    {
        string dir = TestPaths.Fixture("stories260K");
        var tok = TokenizerLoader.Load(dir);
        Assert.Equal(512, tok.VocabSize);
        using var m = CausalLM.Load(dir, new CpuBackend());
        var expected = tok.Encode(Stories260KGreedy);
        var ids = Generation.Greedy(m, [tok.BosId!.Value], expected.Length);
        // llama2.c prints the generated pieces, so the text is the decoding of the ids after BOS; the ids are also
        // what our encoder gives for that text
        Assert.Equal(Stories260KGreedy, tok.Decode(ids[1..]));
        Assert.Equal(expected, ids[1..]);
    }
}

/// <summary>
/// Whether a prompt gets BOS first, as transformers' tokenizer(text) does by default. Expected values: llama-12L's
/// reference.json greedy_ids (made by transformers from tokenizer(prompt)) start with the prompt's ids and no BOS;
/// LlamaTokenizer's add_bos_token defaults to true; llama2.c's run prepends BOS, and its published stories260K sample
/// is generated from BOS alone.
/// </summary>
public class BosDefaultTests
{
    [Fact]
    public void ByteLevelTokenizerWithoutTemplateAddsNoBos()
    {
        var tok = TokenizerLoader.Load(TokenizerRepo.Llama12L);
        var r = TokenizerRepo.Reference(TokenizerRepo.Llama12L);
        var greedy = TokenizerRepo.Ints(r.GetProperty("greedy_ids"));
        Assert.Equal(tok.Encode(r.GetProperty("greedy_prompt").GetString()!)[0], greedy[0]);
        Assert.False(TokenizerLoader.AddsBos(TokenizerRepo.Llama12L, tok));
    }

    [Fact]
    public void SentencePieceAndLlama2cTokenizersAddBos()
    {
        Assert.True(TokenizerLoader.AddsBos(TokenizerRepo.SpFixture, TokenizerLoader.Load(TokenizerRepo.SpFixture)));
        Assert.True(TokenizerLoader.AddsBos(TestPaths.Fixture("stories260K"), TokenizerLoader.Load(TestPaths.Fixture("stories260K"))));
    }

    [Fact]
    public void TokenizerConfigAndTemplateDecide()
    {
        var dir = Directory.CreateTempSubdirectory("eldr-bos-").FullName;
        try
        {
            // a Llama-3 style tokenizer.json: a template that starts with a special token
            var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(TokenizerRepo.Llama12L, "tokenizer.json")))!;
            json["post_processor"] = System.Text.Json.Nodes.JsonNode.Parse("""
                {"type": "Sequence", "processors": [
                  {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
                  {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                   "pair": [], "special_tokens": {}}]}
                """);
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"), json.ToJsonString());
            File.Copy(Path.Combine(TokenizerRepo.Llama12L, "config.json"), Path.Combine(dir, "config.json"));
            var tok = TokenizerLoader.Load(dir);
            Assert.NotNull(tok.BosId);
            Assert.True(TokenizerLoader.AddsBos(dir, tok));
            // tokenizer_config.json's add_bos_token wins
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"add_bos_token": false}""");
            Assert.False(TokenizerLoader.AddsBos(dir, tok));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Llama2cFileBesideAnIncompleteVocabMergesPairIsStillWhatIsRead()
    {
        // vocab.json without merges.txt is not a tokenizer the loader takes, so the llama2.c file is read, and BOS follows it
        var dir = Directory.CreateTempSubdirectory("eldr-bos-").FullName;
        try
        {
            File.Copy(TestPaths.Fixture("llama2c-tokenizer", "tok1024.bin"), Path.Combine(dir, "tok1024.bin"));
            File.WriteAllText(Path.Combine(dir, "vocab.json"), "{}");
            var tok = TokenizerLoader.Load(dir);
            Assert.Equal(1024, tok.VocabSize);
            Assert.True(TokenizerLoader.AddsBos(dir, tok));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void GenerateFromBosAloneGivesLlama2cStories260KSample()
    {
        var r = ElderCuda.Tests.Cli.EldrProcess.Run("generate", TestPaths.Fixture("stories260K"), "--prompt", "", "--max-new-tokens", "45", "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.StartsWith("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.", r.Stdout);
    }
}
