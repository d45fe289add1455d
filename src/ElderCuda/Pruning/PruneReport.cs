using System.Text.Json;
using System.Text.Json.Serialization;
using ElderCuda.Training;

namespace ElderCuda.Pruning;

public sealed record EvalFigures(double Perplexity, double TotalNll, long Predicted, int Windows, int SeqLen, string Source);

/// <summary>Zero-shot multiple choice on Source (eldr zeroshot's scoring; Items scored).</summary>
public sealed record ZeroShotFigures(int Items, double Acc, double AccStderr, double AccNorm, double AccNormStderr, string Source);

public sealed record Candidate(string Name, List<int> RemovedOriginal, double HeldBackCe);

/// <summary>
/// One stage-2 run: EpochKept is the epoch whose weights the model kept (auto: the lowest held-back CE; elder: the
/// last), HeldBackCe its held-back CE. DistillWeight α and DistillTemperature T apply to the distill recipe only (0 and 1 otherwise).
/// </summary>
public sealed record Stage2Trial(string Recipe, double Lr, int Epochs, int EpochKept, double HeldBackCe, List<double> HeldBackCePerEpoch,
    double DistillWeight = 0, double DistillTemperature = 1);

/// <summary>report.json: everything a user needs to know what ran and what it gave (DESIGN.md §1).</summary>
public sealed class PruneReport
{
    public string Tool { get; set; } = "eldr prune";
    public string Method { get; set; } = "";
    /// <summary>Which recipe ran, in words (e.g. "ELDeR paper recipe: output gate, stage 2 regularize").</summary>
    public string Recipe { get; set; } = "";
    public string Model { get; set; } = "";
    public string Backend { get; set; } = "";
    public int LayersBefore { get; set; }
    public int LayersAfter { get; set; }
    public SortedDictionary<string, object?> Settings { get; set; } = new();
    public Dictionary<string, object?> Calibration { get; set; } = new();
    /// <summary>Layers removed (or merged away), original 0-based indices, in the order chosen.</summary>
    public List<int> RemovalOrder { get; set; } = new();
    public List<int> Removed => RemovalOrder.OrderBy(x => x).ToList();
    public List<int> KeptOriginal { get; set; } = new();
    /// <summary>ELDeR: gate values after each round, per gate form.</summary>
    public Dictionary<string, List<float[]>> GatesPerRound { get; set; } = new();
    public List<StepLog> LossPerStep { get; set; } = new();
    /// <summary>Per-layer scores per method (BI, angular distance per block start, SLEB NLL per round, |gate|...).</summary>
    public Dictionary<string, double[]> ScoresPerLayer { get; set; } = new();
    public List<object> Merges { get; set; } = new();
    public List<Candidate> Candidates { get; set; } = new();
    public List<Stage2Trial> Stage2Trials { get; set; } = new();
    public double? HeldBackCeDense { get; set; }
    public double? HeldBackCePruned { get; set; }
    public EvalFigures? DensePerplexity { get; set; }
    public EvalFigures? PrunedPerplexity { get; set; }
    public ZeroShotFigures? DenseZeroShot { get; set; }
    public ZeroShotFigures? PrunedZeroShot { get; set; }
    public Dictionary<string, double> TimingsSeconds { get; set; } = new();
    /// <summary>Peak device memory per stage (CUDA) and the process's peak host working set after it, in bytes.</summary>
    public Dictionary<string, long> PeakMemoryBytes { get; set; } = new();
    public List<string> Plots { get; set; } = new();
    public List<string> Notes { get; set; } = new();

    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter() },
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);
}
