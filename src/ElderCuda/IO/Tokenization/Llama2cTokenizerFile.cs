using System.Text;
using System.Text.RegularExpressions;
using Google.Protobuf;

namespace ElderCuda.IO.Tokenization;

/// <summary>
/// llama2.c's tokenizer file (`tokenizer.bin`, `tok512.bin`, ...: what karpathy/llama2.c's tokenizer.py `export`
/// writes from a SentencePiece model): a uint32 max piece length, then per piece a float32 score, a uint32 byte
/// length and the piece's UTF-8 bytes, with "▁" written as " ", bos as "\n&lt;s&gt;\n" and eos as "\n&lt;/s&gt;\n".
/// Byte pieces are "&lt;0xXX&gt;" in older exports and the character chr(XX) in newer ones.
/// llama2.c encodes by merging the adjacent pair with the highest score, after a dummy-prefix space, falling back
/// to byte pieces: SentencePiece BPE with byte fallback. So the file is turned back into a SentencePiece model
/// (pieces, scores and types; BPE, identity normalisation, dummy prefix, whitespace kept) and run by
/// <see cref="SentencePieceModelTokenizer"/>.
/// </summary>
internal static partial class Llama2cTokenizerFile
{
    /// <summary>tokenizer.bin, or the one tok*.bin, in a model folder; null when there is none.</summary>
    public static string? Find(string dir)
    {
        string main = Path.Combine(dir, "tokenizer.bin");
        if (File.Exists(main)) return main;
        var toks = Directory.GetFiles(dir, "tok*.bin");
        if (toks.Length > 1)
            throw new TokenizerException($"'{dir}' holds several llama2.c tokenizer files ({string.Join(", ", toks.Select(Path.GetFileName).Order())}); keep one, or name it tokenizer.bin");
        return toks.Length == 1 ? toks[0] : null;
    }

    public static SentencePieceModelTokenizer Load(string path)
    {
        var pieces = Read(path);
        using var model = new MemoryStream(ToSentencePieceModel(pieces));
        return new SentencePieceModelTokenizer(model);
    }

    /// <summary>The pieces (as llama2.c stores them) and their scores.</summary>
    internal static List<(string Piece, float Score)> Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 4) throw new TokenizerException($"'{path}' is not a llama2.c tokenizer file: {bytes.Length} bytes, too short for its header");
        uint maxLen = BitConverter.ToUInt32(bytes, 0);
        var utf8 = new UTF8Encoding(false, throwOnInvalidBytes: true);
        var pieces = new List<(string, float)>();
        int o = 4;
        while (o < bytes.Length)
        {
            if (o + 8 > bytes.Length)
                throw new TokenizerException($"'{path}' is truncated: piece {pieces.Count} at byte {o} has no complete score and length");
            float score = BitConverter.ToSingle(bytes, o);
            uint len = BitConverter.ToUInt32(bytes, o + 4);
            o += 8;
            if (len > maxLen || len > bytes.Length - o)
                throw new TokenizerException($"'{path}' is not a valid llama2.c tokenizer file: piece {pieces.Count} at byte {o - 8} claims {len} bytes " +
                                             (len > maxLen ? $"(the header's maximum is {maxLen})" : $"(only {bytes.Length - o} left)"));
            string piece;
            try { piece = utf8.GetString(bytes, o, (int)len); }
            catch (DecoderFallbackException) { throw new TokenizerException($"'{path}': piece {pieces.Count} at byte {o} is not valid UTF-8"); }
            pieces.Add((piece, score));
            o += (int)len;
        }
        if (pieces.Count == 0) throw new TokenizerException($"'{path}' holds no pieces");
        return pieces;
    }

    [GeneratedRegex("^<0x[0-9A-Fa-f]{2}>$")]
    private static partial Regex BytePiece();

    // sentencepiece_model.proto: ModelProto.SentencePiece.Type
    const int Normal = 1, Unknown = 2, Control = 3, Byte = 6;

    /// <summary>A serialised SentencePiece ModelProto for llama2.c's pieces (see the class summary).</summary>
    internal static byte[] ToSentencePieceModel(IReadOnlyList<(string Piece, float Score)> pieces)
    {
        // newer exports write byte piece k as the character k: 256 such pieces in a row, right after the specials
        int charBytesAt = -1;
        for (int b = 0; b + 256 <= pieces.Count && b <= 8 && charBytesAt < 0; b++)
        {
            bool all = true;
            for (int k = 0; k < 256 && all; k++) all = pieces[b + k].Piece.Length == 1 && pieces[b + k].Piece[0] == (char)k;
            if (all) charBytesAt = b;
        }
        int unk = -1, bos = -1, eos = -1;
        bool anyByte = false;
        var pieceMessages = new List<byte[]>(pieces.Count);
        for (int i = 0; i < pieces.Count; i++)
        {
            var (p, score) = pieces[i];
            int type = Normal;
            if (p == "<unk>") { type = Unknown; unk = i; }
            else if (p == "\n<s>\n") { p = "<s>"; type = Control; bos = i; }
            else if (p == "\n</s>\n") { p = "</s>"; type = Control; eos = i; }
            else if (charBytesAt >= 0 && i >= charBytesAt && i < charBytesAt + 256) { p = $"<0x{i - charBytesAt:X2}>"; type = Byte; }
            else if (BytePiece().IsMatch(p)) { p = p.ToUpperInvariant().Replace("<0X", "<0x"); type = Byte; }
            else p = p.Replace(' ', '\u2581');
            anyByte |= type == Byte;
            pieceMessages.Add(Message(w =>
            {
                w.WriteTag(1, WireFormat.WireType.LengthDelimited); w.WriteString(p);
                w.WriteTag(2, WireFormat.WireType.Fixed32); w.WriteFloat(score);
                if (type != Normal) { w.WriteTag(3, WireFormat.WireType.Varint); w.WriteEnum(type); }
            }));
        }
        var trainer = Message(w =>
        {
            w.WriteTag(3, WireFormat.WireType.Varint); w.WriteEnum(2);                   // model_type: BPE
            w.WriteTag(4, WireFormat.WireType.Varint); w.WriteInt32(pieces.Count);       // vocab_size
            w.WriteTag(35, WireFormat.WireType.Varint); w.WriteBool(anyByte);            // byte_fallback
            w.WriteTag(40, WireFormat.WireType.Varint); w.WriteInt32(unk < 0 ? 0 : unk); // unk_id
            w.WriteTag(41, WireFormat.WireType.Varint); w.WriteInt32(bos);               // bos_id
            w.WriteTag(42, WireFormat.WireType.Varint); w.WriteInt32(eos);               // eos_id
            w.WriteTag(43, WireFormat.WireType.Varint); w.WriteInt32(-1);                // pad_id
        });
        var normalizer = Message(w =>
        {
            w.WriteTag(1, WireFormat.WireType.LengthDelimited); w.WriteString("identity");
            w.WriteTag(3, WireFormat.WireType.Varint); w.WriteBool(true);                // add_dummy_prefix
            w.WriteTag(4, WireFormat.WireType.Varint); w.WriteBool(false);               // remove_extra_whitespaces
            w.WriteTag(5, WireFormat.WireType.Varint); w.WriteBool(true);                // escape_whitespaces
        });
        return Message(w =>
        {
            foreach (var m in pieceMessages) { w.WriteTag(1, WireFormat.WireType.LengthDelimited); w.WriteBytes(ByteString.CopyFrom(m)); }
            w.WriteTag(2, WireFormat.WireType.LengthDelimited); w.WriteBytes(ByteString.CopyFrom(trainer));
            w.WriteTag(3, WireFormat.WireType.LengthDelimited); w.WriteBytes(ByteString.CopyFrom(normalizer));
        });
    }

    static byte[] Message(Action<CodedOutputStream> write)
    {
        using var ms = new MemoryStream();
        using (var w = new CodedOutputStream(ms, leaveOpen: true)) { write(w); w.Flush(); }
        return ms.ToArray();
    }
}
