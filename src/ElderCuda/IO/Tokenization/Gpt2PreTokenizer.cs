using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace ElderCuda.IO.Tokenization;

/// <summary>
/// The GPT-2 split of HF's ByteLevel pre-tokenizer (use_regex: true), i.e. the pattern
/// <c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</c>, written as a scanner over code points.
/// Why not a .NET <see cref="Regex"/> (e.g. Microsoft.ML.Tokenizers' RegexPreTokenizer): .NET regexes match UTF-16
/// code units, so a letter outside the BMP (e.g. "𝐀", a surrogate pair) is not <c>\p{L}</c> there, while HF (Oniguruma,
/// code points) reads it as a letter; "a𝐀" would split differently. The scanner is also several times faster.
/// </summary>
internal sealed class Gpt2PreTokenizer : PreTokenizer
{
    public static readonly Gpt2PreTokenizer Instance = new();

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => Split(text.AsSpan());
    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text);

    private enum Cls : byte { Letter, Number, Space, Other }

    private static Cls Classify(ReadOnlySpan<char> s, int i, out int width)
    {
        char c = s[i];
        if (c < 128)
        {
            width = 1;
            if ((uint)((c | 0x20) - 'a') <= 'z' - 'a') return Cls.Letter;
            if ((uint)(c - '0') <= 9) return Cls.Number;
            if (c == ' ' || (c >= '\t' && c <= '\r')) return Cls.Space;
            return Cls.Other;
        }
        if (Rune.DecodeFromUtf16(s[i..], out var r, out width) != OperationStatus.Done) { width = 1; return Cls.Other; }
        if (Rune.IsWhiteSpace(r)) return Cls.Space;
        switch (Rune.GetUnicodeCategory(r))
        {
            case UnicodeCategory.UppercaseLetter: case UnicodeCategory.LowercaseLetter: case UnicodeCategory.TitlecaseLetter:
            case UnicodeCategory.ModifierLetter: case UnicodeCategory.OtherLetter:
                return Cls.Letter;
            case UnicodeCategory.DecimalDigitNumber: case UnicodeCategory.LetterNumber: case UnicodeCategory.OtherNumber:
                return Cls.Number;
            default:
                return Cls.Other;
        }
    }

    /// <summary>End of the run of class <paramref name="cls"/> starting at <paramref name="i"/>.</summary>
    private static int RunEnd(ReadOnlySpan<char> s, int i, Cls cls)
    {
        while (i < s.Length)
        {
            if (Classify(s, i, out int w) != cls) break;
            i += w;
        }
        return i;
    }

    internal static List<(int Offset, int Length)> Split(ReadOnlySpan<char> s)
    {
        var parts = new List<(int, int)>(s.Length / 4 + 1);
        int i = 0;
        while (i < s.Length)
        {
            int end = MatchAt(s, i);
            parts.Add((i, end - i));
            i = end;
        }
        return parts;
    }

    private static int MatchAt(ReadOnlySpan<char> s, int i)
    {
        char c = s[i];
        // 's|'t|'re|'ve|'m|'ll|'d
        if (c == '\'' && i + 1 < s.Length)
        {
            char d = s[i + 1];
            if (d is 's' or 't' or 'm' or 'd') return i + 2;
            if (i + 2 < s.Length && ((d == 'r' && s[i + 2] == 'e') || (d == 'v' && s[i + 2] == 'e') || (d == 'l' && s[i + 2] == 'l'))) return i + 3;
        }
        var cls = Classify(s, i, out int w);
        // ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+' with the optional leading space
        if (c == ' ' && i + 1 < s.Length)
        {
            var next = Classify(s, i + 1, out int w2);
            if (next != Cls.Space) return RunEnd(s, i + 1 + w2, next);
        }
        if (cls != Cls.Space) return RunEnd(s, i + w, cls);
        // \s+(?!\S)|\s+ : a whitespace run followed by a non-space gives back its last char to that word
        int wsEnd = RunEnd(s, i + w, Cls.Space);
        if (wsEnd == s.Length) return wsEnd;
        int lastStart = wsEnd - 1;
        if (char.IsLowSurrogate(s[lastStart]) && lastStart - 1 >= i && char.IsHighSurrogate(s[lastStart - 1])) lastStart--;
        return lastStart > i ? lastStart : wsEnd;
    }
}

/// <summary>
/// HF's Split pre-tokenizer with behavior "Isolated" (used before a regex-less ByteLevel by Llama-3 and Qwen2):
/// matches and the gaps between them both become pieces. Uses a .NET regex, so see the surrogate caveat on
/// <see cref="Gpt2PreTokenizer"/>: letters outside the BMP may split differently from HF.
/// </summary>
internal sealed class IsolatedRegexPreTokenizer(Regex regex) : PreTokenizer
{
    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => Split(text.AsSpan());
    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text);

    private List<(int, int)> Split(ReadOnlySpan<char> s)
    {
        var parts = new List<(int, int)>();
        int pos = 0;
        foreach (var m in regex.EnumerateMatches(s))
        {
            if (m.Length == 0) continue;
            if (m.Index > pos) parts.Add((pos, m.Index - pos));
            parts.Add((m.Index, m.Length));
            pos = m.Index + m.Length;
        }
        if (pos < s.Length) parts.Add((pos, s.Length - pos));
        return parts;
    }
}

/// <summary>No split at all (ByteLevel with use_regex: false and nothing before it).</summary>
internal sealed class WholeTextPreTokenizer : PreTokenizer
{
    public static readonly WholeTextPreTokenizer Instance = new();
    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => text.Length == 0 ? [] : [(0, text.Length)];
    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => text.Length == 0 ? [] : [(0, text.Length)];
}
