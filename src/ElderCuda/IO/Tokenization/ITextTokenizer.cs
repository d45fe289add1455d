namespace ElderCuda.IO.Tokenization;

/// <summary>Thrown when a model folder's tokenizer cannot be loaded; the message names the folder or file and the problem.</summary>
public sealed class TokenizerException : Exception
{
    public TokenizerException(string message) : base(message) { }
    public TokenizerException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>A text tokenizer that reproduces the Hugging Face / SentencePiece tokenizer of a checkpoint.</summary>
public interface ITextTokenizer
{
    /// <summary>One past the largest token id (model vocabulary and added tokens).</summary>
    int VocabSize { get; }
    int? BosId { get; }
    int? EosId { get; }
    /// <summary>
    /// Encode with NO special tokens added (no BOS). Special/added tokens written literally in the text
    /// (e.g. "&lt;|endoftext|&gt;") are read as that special token, as HF tokenizers does.
    /// </summary>
    int[] Encode(string text);
    /// <summary>Decode; skips nothing, special tokens decode to their text.</summary>
    string Decode(IReadOnlyList<int> ids);
    /// <summary>Token id for a special token string, or null.</summary>
    int? TokenToId(string token);
}
