using System.CommandLine;
using System.Text.Json;
using ElderCuda.Backends;
using ElderCuda.Eval;
using ElderCuda.IO.Safetensors;
using ElderCuda.IO.Tokenization;
using ElderCuda.Model;
using ElderCuda.Tensors;
using Spectre.Console;

namespace Eldr.Cli;

public static partial class Cli
{
    /// <summary>--device, shared by every command: auto, cpu, cuda or cuda:N, checked as the command line is parsed.</summary>
    internal static readonly Option<string> DeviceOption = NewDeviceOption();

    static Option<string> NewDeviceOption()
    {
        var o = new Option<string>("--device") { Description = BackendFactory.DeviceHelp, DefaultValueFactory = _ => "auto" };
        o.Validators.Add(r =>
        {
            var v = r.GetValueOrDefault<string>();
            try { BackendFactory.ParseDevice(v); }
            catch (ArgumentException e) { r.AddError(e.Message); }
        });
        return o;
    }
    internal static readonly Option<bool> Fp32Option = new("--fp32") { Description = "CUDA: compute in float32 (parity mode) instead of bf16" };

    public static int Run(string[] args)
    {
        // compiling a kernel family with NVRTC at first use takes seconds: say so rather than pause silently
        ElderCuda.Backends.Cuda.KernelCompiler.Log = message => Console.Error.WriteLine(message);
        var root = new RootCommand("eldr — prune transformer layers with ELDeR and its baselines, on CPU or CUDA");
        root.Subcommands.Add(InfoCommand());
        root.Subcommands.Add(PplCommand());
        root.Subcommands.Add(GenerateCommand());
        root.Subcommands.Add(TraceCommand());
        foreach (var extra in ExtraCommands()) root.Subcommands.Add(extra);
        return root.Parse(args).Invoke();
    }


    /// <summary>Runs a command body; known failures print one clear line and exit non-zero, never a stack trace.</summary>
    internal static int Guard(Func<int> body)
    {
        try { return body(); }
        catch (OperationCanceledException) { Console.Error.WriteLine("eldr: interrupted; no partial output was written"); return 130; }
        catch (Exception e) when (e is ModelConfigException or SafetensorsException or TokenizerException or FileNotFoundException
                                      or DirectoryNotFoundException or IOException or ArgumentException or InvalidOperationException
                                      or PlatformNotSupportedException or KeyNotFoundException or InvalidDataException or JsonException
                                      or UnauthorizedAccessException or OutOfMemoryException or NotSupportedException)
        {
            Console.Error.WriteLine($"eldr: error: {e.Message}");
            if (Environment.GetEnvironmentVariable("ELDR_DEBUG") == "1") Console.Error.WriteLine(e);
            return 2;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"eldr: internal error ({e.GetType().Name}): {e.Message}");
            if (Environment.GetEnvironmentVariable("ELDR_DEBUG") == "1") Console.Error.WriteLine(e);
            return 70;
        }
    }

    internal static Argument<string> DirArgument() => new("dir") { Description = "a Hugging Face model folder (config.json, *.safetensors, tokenizer files)" };

    internal static IBackend OpenBackend(ParseResult pr)
    {
        var be = BackendFactory.Create(pr.GetValue(DeviceOption)!, pr.GetValue(Fp32Option));
        // the CUDA backend's name carries its compute type already ("cuda:NVIDIA H100 (BF16)")
        Console.Error.WriteLine(be.Name.EndsWith($"({be.ComputeType})") ? $"backend: {be.Name}" : $"backend: {be.Name} ({be.ComputeType})");
        return be;
    }

    /// <summary>
    /// Prints the memory a run will need and, on a GPU, fails before loading anything when it exceeds
    /// the free device memory (the message says how much is needed and how much is free).
    /// </summary>
    internal static void CheckMemory(IBackend be, string modelDir, int seqLen, int batch, bool training)
    {
        var cfg = ModelConfig.Load(modelDir);
        long n;
        using (var ck = Checkpoint.Open(modelDir)) n = ck.Names.Sum(x => ck.Info(x).Shape.Aggregate(1L, (a, b) => a * b));
        var est = MemoryEstimate.For(cfg, n, seqLen, batch);
        long need = training ? est.TrainingBytes : est.InferenceBytes;
        if (be.ComputeType == DType.F32) need += est.WeightBytes; // fp32 weights are twice the bf16 estimate
        string what = training ? $"training {batch}×{seqLen}" : $"inference {batch}×{seqLen}";
        if (be is ElderCuda.Backends.Cuda.CudaBackend cuda)
        {
            var (free, total) = cuda.FreeAndTotalBytes();
            Console.Error.WriteLine($"memory: {what} needs about {Gib(need)}; {Gib(free)} free of {Gib(total)} on {cuda.DeviceName}");
            if (need > free)
                throw new InvalidOperationException($"{cfg.Architecture} ({n / 1e9:F2} B parameters) needs about {Gib(need)} for {what}, but only {Gib(free)} is free on {cuda.DeviceName}; use a smaller --batch/--seqlen, or --device cpu");
        }
        else Console.Error.WriteLine($"memory: {what} needs about {Gib(need)} of host memory");
    }

    // ---- info -------------------------------------------------------------------------------------
    static Command InfoCommand()
    {
        var dir = DirArgument();
        var seq = new Option<int?>("--seqlen") { Description = "sequence length for the activation estimate (default: evaluation length)" };
        var batch = new Option<int>("--batch") { Description = "batch size for the training estimate", DefaultValueFactory = _ => 8 };
        var cmd = new Command("info", "family, layers, parameters, dtype, and the memory needed for inference and training") { dir, seq, batch };
        cmd.SetAction(pr => Guard(() =>
        {
            var path = pr.GetValue(dir)!;
            var cfg = ModelConfig.Load(path);
            using var ck = Checkpoint.Open(path);
            long n = 0; var dtypes = new SortedSet<string>();
            foreach (var name in ck.Names) { var i = ck.Info(name); n += i.Shape.Aggregate(1L, (a, b) => a * b); dtypes.Add(i.DType.ToString()); }
            int T = pr.GetValue(seq) ?? DefaultSeqLen(cfg);
            var est = MemoryEstimate.For(cfg, n, T, pr.GetValue(batch));
            var t = new Table().AddColumns("field", "value");
            t.AddRow("architecture", $"{cfg.Architecture} ({cfg.Family})");
            t.AddRow("layers", cfg.NumLayers.ToString());
            t.AddRow("hidden / intermediate", $"{cfg.HiddenSize} / {cfg.IntermediateSize}");
            t.AddRow("heads (q / kv) × head_dim", $"{cfg.NumHeads} / {cfg.NumKvHeads} × {cfg.HeadDim}");
            t.AddRow("vocab", cfg.VocabSize.ToString());
            t.AddRow("parameters", $"{n:N0} ({n / 1e6:F2} M)");
            t.AddRow("dtype (file)", string.Join(", ", dtypes));
            t.AddRow("tied head", cfg.TieWordEmbeddings.ToString());
            t.AddRow($"inference, bf16, 1×{T}", Gib(est.InferenceBytes));
            t.AddRow($"training, {pr.GetValue(batch)}×{T} (bf16 weights, fp32 master + AdamW + grads)", Gib(est.TrainingBytes));
            AnsiConsole.Write(t);
            return 0;
        }));
        return cmd;
    }

    static string Gib(long b) => $"{b / (double)(1L << 30):F2} GiB";

    internal static int DefaultSeqLen(ModelConfig cfg) => Math.Min(cfg.MaxPositionEmbeddings, 2048);

    // ---- ppl --------------------------------------------------------------------------------------
    static Command PplCommand()
    {
        var dir = DirArgument();
        var data = new Option<string>("--data") { Description = "text file to evaluate (read whole; <|endoftext|> in it is the special token)", Required = true };
        var seq = new Option<int?>("--seqlen") { Description = "window length (default: min(max_position_embeddings, 2048))" };
        var maxW = new Option<int?>("--max-windows") { Description = "evaluate only the first N windows" };
        var batch = new Option<int?>("--batch") { Description = "windows per forward pass (default: 1 on CPU, 8 on CUDA)" };
        var json = new Option<bool>("--json") { Description = "print the result as JSON" };
        var profile = new Option<bool>("--profile") { Description = "print time per op (synchronises after every op)" };
        var cmd = new Command("ppl", "perplexity over non-overlapping windows (DESIGN.md §6)") { dir, data, seq, maxW, batch, json, profile, DeviceOption, Fp32Option };
        cmd.SetAction(pr => Guard(() =>
        {
            var path = pr.GetValue(dir)!;
            var file = pr.GetValue(data)!;
            if (!File.Exists(file)) throw new FileNotFoundException($"{file}: no such data file");
            var tok = TokenizerLoader.Load(path);
            var swTok = System.Diagnostics.Stopwatch.StartNew();
            var ids = tok.Encode(File.ReadAllText(file));
            Console.Error.WriteLine($"tokenized {ids.Length} tokens in {swTok.Elapsed.TotalSeconds:F2} s");
            IBackend be = OpenBackend(pr);
            if (pr.GetValue(profile)) be = new ProfilingBackend(be);
            using var _be = be;
            var cfg0 = ModelConfig.Load(path);
            int T = pr.GetValue(seq) ?? DefaultSeqLen(cfg0);
            int b = pr.GetValue(batch) ?? (be.Name == "cpu" ? 1 : 8);
            CheckMemory(be is ProfilingBackend pb0 ? pb0.Inner : be, path, T, b, training: false);
            using var model = CausalLM.Load(path, be);
            PerplexityResult r = null!;
            var sw = System.Diagnostics.Stopwatch.StartNew();
            WithProgress($"ppl {Path.GetFileName(file)}", p => r = Perplexity.Evaluate(model, ids, T, pr.GetValue(maxW), b, p));
            if (pr.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(new { ppl = r.Perplexity, nll = r.TotalNll, predicted = r.Predicted, windows = r.Windows, seqlen = r.SeqLen, tokens = ids.Length, seconds = sw.Elapsed.TotalSeconds, backend = be.Name }));
            else
                Console.WriteLine($"ppl {r.Perplexity:F4}  ({r.Windows} windows × {r.SeqLen}, {r.Predicted} predicted tokens, {sw.Elapsed.TotalSeconds:F1} s on {be.Name})");
            if (be is ProfilingBackend pb) WriteProfile(pb);
            return 0;
        }));
        return cmd;
    }

    /// <summary>The --profile table (eldr ppl, eldr speed): time and calls per op, slowest first, on stderr.</summary>
    internal static void WriteProfile(ProfilingBackend pb)
    {
        foreach (var (op, sec, calls) in pb.Report()) Console.Error.WriteLine($"  {op,-18} {sec,8:F3} s  {calls,8} calls");
    }

    /// <summary>A progress bar on an interactive terminal; plain percentage lines otherwise (CI logs).</summary>
    internal static void WithProgress(string label, Action<IProgress<double>> work)
    {
        if (!Console.IsErrorRedirected && AnsiConsole.Profile.Capabilities.Interactive)
        {
            AnsiConsole.Progress().AutoClear(true).Start(ctx =>
            {
                var task = ctx.AddTask(label, maxValue: 1.0);
                work(new Progress<double>(v => task.Value = v));
            });
            return;
        }
        int lastPct = -10;
        work(new SyncProgress(v =>
        {
            int pct = (int)(v * 100);
            if (pct >= lastPct + 10) { lastPct = pct; Console.Error.WriteLine($"{label}: {pct}%"); }
        }));
    }

    sealed class SyncProgress(Action<double> a) : IProgress<double> { public void Report(double v) => a(v); }

    // ---- generate ---------------------------------------------------------------------------------
    static Command GenerateCommand()
    {
        var dir = DirArgument();
        var prompt = new Option<string>("--prompt") { Description = "the prompt text", Required = true };
        var n = new Option<int>("--max-new-tokens") { Description = "tokens to generate", DefaultValueFactory = _ => 35 };
        var ids = new Option<bool>("--ids") { Description = "also print the token ids (prompt + generated)" };
        var bos = new Option<string>("--bos")
        {
            Description = "put BOS before the prompt: auto (as transformers' tokenizer does by default: tokenizer_config.json's add_bos_token, "
                          + "tokenizer.json's template; yes for SentencePiece and llama2.c tokenizers), yes or no",
            DefaultValueFactory = _ => "auto",
        };
        bos.AcceptOnlyFromAmong("auto", "yes", "no");
        var noCache = new Option<bool>("--no-kv-cache") { Description = "recompute the whole prefix for every new token (slow; the cache's reference)" };
        var cmd = new Command("generate", "greedy decoding (with a KV cache)") { dir, prompt, n, ids, bos, noCache, DeviceOption, Fp32Option };
        cmd.SetAction(pr => Guard(() =>
        {
            var path = pr.GetValue(dir)!;
            var tok = TokenizerLoader.Load(path);
            using var be = OpenBackend(pr);
            CheckMemory(be, path, Math.Min(2048, ModelConfig.Load(path).MaxPositionEmbeddings), 1, training: false);
            using var model = CausalLM.Load(path, be);
            var promptIds = tok.Encode(pr.GetValue(prompt)!);
            bool withBos = pr.GetValue(bos) switch { "yes" => true, "no" => false, _ => TokenizerLoader.AddsBos(path, tok) };
            if (withBos)
                promptIds = tok.BosId is { } b ? [b, .. promptIds] : throw new ArgumentException($"--bos yes: the tokenizer of {path} has no BOS token");
            var outIds = Generation.Greedy(model, promptIds, pr.GetValue(n), eosId: null, kvCache: !pr.GetValue(noCache));
            Console.WriteLine(tok.Decode(withBos ? outIds[1..] : outIds));
            if (pr.GetValue(ids)) Console.WriteLine("ids: [" + string.Join(", ", outIds) + "]");
            return 0;
        }));
        return cmd;
    }

    // ---- trace ------------------------------------------------------------------------------------
    static Command TraceCommand()
    {
        var dir = DirArgument();
        var tokens = new Option<string>("--tokens") { Description = "safetensors file with input_ids (I64 [B,T])", Required = true };
        var output = new Option<string>("--out") { Description = "safetensors file to write", Required = true };
        var cmd = new Command("trace", "logits, loss (mean next-token CE, labels = input_ids), hidden_states and grad.<param> as transformers computes them") { dir, tokens, output, DeviceOption, Fp32Option };
        cmd.SetAction(pr => Guard(() =>
        {
            var path = pr.GetValue(dir)!;
            long[] raw; int[] shape;
            using (var f = SafetensorsFile.Open(pr.GetValue(tokens)!))
            {
                if (!f.Contains("input_ids")) throw new InvalidDataException($"{f.Path}: no 'input_ids' tensor");
                var info = f.Info("input_ids");
                if (info.Shape.Length != 2) throw new InvalidDataException($"{f.Path}: input_ids must be [B,T], got [{string.Join(",", info.Shape)}]");
                raw = f.ReadInt64("input_ids"); shape = info.Shape;
            }
            using var be = OpenBackend(pr);
            CheckMemory(be, path, shape[1], shape[0], training: true);
            using var model = CausalLM.Load(path, be);
            var batch = new TokenBatch(raw.Select(v => checked((int)v)).ToArray(), shape[0], shape[1]);
            var r = model.Step(batch, new StepOptions { Backward = true, WeightGrads = true, KeepHiddenStates = true, KeepLogits = true });
            int B = shape[0], T = shape[1];
            var outT = new List<TensorToWrite>
            {
                new("input_ids", DType.I64, shape, DTypes.FromFloat32(DType.I64, raw.Select(v => (float)v).ToArray())),
                SafetensorsWriter.FromFloat32("logits", DType.F32, [B, T, model.Config.VocabSize], r.Logits),
                SafetensorsWriter.FromFloat32("loss", DType.F32, [1], [(float)r.Loss]),
            };
            // hidden_states stacks the entries that share the hidden width. With OPT's project_out the last
            // entry (after the final norm and project_out) is narrower: it is written as final_hidden.
            int L1 = r.HiddenStates!.Length, hd = r.HiddenStates[0].Length / (B * T);
            int stacked = r.HiddenStates[^1].Length == r.HiddenStates[0].Length ? L1 : L1 - 1;
            var hs = new float[(long)stacked * B * T * hd];
            for (int i = 0; i < stacked; i++) r.HiddenStates[i].CopyTo(hs, (long)i * B * T * hd);
            outT.Add(SafetensorsWriter.FromFloat32("hidden_states", DType.F32, [stacked, B, T, hd], hs));
            if (stacked < L1)
                outT.Add(SafetensorsWriter.FromFloat32("final_hidden", DType.F32, [B, T, r.HiddenStates[^1].Length / (B * T)], r.HiddenStates[^1]));
            foreach (var p in model.Parameters)
            {
                var g = new float[p.Grad!.Count]; be.ToHost(p.Grad, g);
                outT.Add(SafetensorsWriter.FromFloat32("grad." + p.Name, DType.F32, p.Shape, g));
            }
            SafetensorsWriter.Write(pr.GetValue(output)!, outT, new Dictionary<string, string> { ["producer"] = "eldr trace", ["backend"] = be.Name });
            Console.WriteLine($"loss {r.Loss:F6}; wrote {outT.Count} tensors to {pr.GetValue(output)}");
            return 0;
        }));
        return cmd;
    }
}
