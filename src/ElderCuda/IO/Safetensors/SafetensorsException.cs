namespace ElderCuda.IO.Safetensors;

/// <summary>
/// A safetensors file or checkpoint folder that cannot be read. The message always starts with the
/// path of the file (or folder) at fault, then says what is wrong with it, so a user who sees only
/// the message knows which file to look at.
/// </summary>
public sealed class SafetensorsException : Exception
{
    /// <summary>The file or folder the problem is in.</summary>
    public string FilePath { get; }

    /// <summary>The problem alone, without the path.</summary>
    public string Problem { get; }

    public SafetensorsException(string path, string problem, Exception? inner = null)
        : base($"{path}: {problem}", inner)
    {
        FilePath = path;
        Problem = problem;
    }
}
