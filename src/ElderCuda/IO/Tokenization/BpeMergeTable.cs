namespace ElderCuda.IO.Tokenization;

/// <summary>
/// BPE merges keyed by the ids of the pair, applied as HF's BPE does: the adjacent pair with the lowest merge rank
/// goes first, the leftmost on ties. A heap with lazily dropped stale entries keeps a word of n symbols at
/// O(n log n), which matters when a whole text (no whitespace split) or a long run of one character is one word.
/// </summary>
internal sealed class BpeMergeTable
{
    private readonly Dictionary<long, (int Rank, int NewId)> _table = new();

    public BpeMergeTable(string path, IReadOnlyDictionary<string, int> vocab, IReadOnlyList<(string A, string B)> merges)
    {
        for (int r = 0; r < merges.Count; r++)
        {
            var (a, b) = merges[r];
            if (!vocab.TryGetValue(a, out int ia) || !vocab.TryGetValue(b, out int ib) || !vocab.TryGetValue(a + b, out int ic))
                throw new TokenizerException($"'{path}': merge '{a} {b}' uses a token that is not in the vocabulary.");
            _table.TryAdd(Key(ia, ib), (r, ic));
        }
    }

    private static long Key(int a, int b) => ((long)a << 32) | (uint)b;

    /// <summary>Merges <paramref name="symbols"/> (token ids) and appends the result to <paramref name="output"/>.</summary>
    public void Apply(List<int> symbols, List<int> output)
    {
        int count = symbols.Count;
        var ids = symbols.ToArray();
        var next = new int[count];
        var prev = new int[count];
        for (int i = 0; i < count; i++) { next[i] = i + 1; prev[i] = i - 1; }
        var alive = new bool[count];
        Array.Fill(alive, true);
        var heap = new PriorityQueue<(int Left, int LeftId, int RightId), (int Rank, int Pos)>();
        void Push(int left)
        {
            int right = next[left];
            if (right >= count) return;
            if (_table.TryGetValue(Key(ids[left], ids[right]), out var m)) heap.Enqueue((left, ids[left], ids[right]), (m.Rank, left));
        }
        for (int i = 0; i + 1 < count; i++) Push(i);
        while (heap.TryDequeue(out var e, out _))
        {
            int l = e.Left;
            if (!alive[l] || ids[l] != e.LeftId) continue;
            int r = next[l];
            if (r >= count || ids[r] != e.RightId) continue;
            ids[l] = _table[Key(e.LeftId, e.RightId)].NewId;
            alive[r] = false;
            next[l] = next[r];
            if (next[r] < count) prev[next[r]] = l;
            if (prev[l] >= 0) Push(prev[l]);
            Push(l);
        }
        for (int i = 0; i < count; i = next[i]) output.Add(ids[i]);
    }
}
