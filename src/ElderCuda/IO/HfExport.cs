using System.Text.Json;
using ElderCuda.IO.Safetensors;
using ElderCuda.Model;

namespace ElderCuda.IO;

/// <summary>
/// Writes a (pruned) model as a Hugging Face checkpoint that transformers loads unchanged: layer tensors
/// renumbered model.layers.{j} (as the model's current numbering is), each in the dtype its source file
/// used, a tied LM head not written twice, sharded when large, config.json with num_hidden_layers (and
/// layer_types) for the kept layers, and the tokenizer files copied from the source folder.
/// The output appears atomically: everything is written into "&lt;out&gt;.tmp-xxxx" and renamed at the end,
/// so an interrupt never leaves a half-written checkpoint under the requested name.
/// </summary>
public static class HfExport
{
    public static readonly string[] TokenizerFiles =
    [
        "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "tokenizer.model",
        "special_tokens_map.json", "generation_config.json", "added_tokens.json",
    ];

    /// <summary>The tensors to write, in model order, named as the checkpoint spells them.</summary>
    public static List<TensorToWrite> Tensors(CausalLM m)
    {
        var list = new List<TensorToWrite>();
        foreach (var p in m.Parameters)
        {
            if (m.Config.TieWordEmbeddings && p.Name == "lm_head.weight") continue;
            string name = p.Layer >= 0 ? m.LayerPrefix(p.Layer) + p.LocalName : p.Name;
            list.Add(SafetensorsWriter.FromFloat32(name, p.FileDType, p.Shape, m.ReadParameter(p.Name)));
        }
        return list;
    }

    /// <summary>
    /// Export into outDir. extra(tmpDir) may add files (report.json, plots) before the rename.
    /// overwrite replaces an existing outDir only after the new one is complete.
    /// </summary>
    public static void Export(CausalLM m, string outDir, bool overwrite = false, long maxShardBytes = 5L << 30,
        Action<string>? extra = null, CancellationToken ct = default)
    {
        outDir = Path.GetFullPath(outDir.TrimEnd('/', '\\'));
        if (Directory.Exists(outDir) && !overwrite)
            throw new IOException($"{outDir} already exists (pass --force to replace it)");
        string tmp = $"{outDir}.tmp-{Guid.NewGuid().ToString("N")[..8]}";
        Directory.CreateDirectory(tmp);
        try
        {
            ct.ThrowIfCancellationRequested();
            SafetensorsWriter.WriteCheckpoint(tmp, Tensors(m), maxShardBytes, new Dictionary<string, string> { ["format"] = "pt" });
            ct.ThrowIfCancellationRequested();
            var kept = m.OriginalLayerIndex.ToList();
            var json = m.Config.JsonWithLayers(kept);
            File.WriteAllText(Path.Combine(tmp, "config.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            if (!string.IsNullOrEmpty(m.SourceDir))
            {
                foreach (var f in TokenizerFiles)
                {
                    var src = Path.Combine(m.SourceDir, f);
                    if (File.Exists(src)) File.Copy(src, Path.Combine(tmp, f));
                }
                // llama2.c's tokenizer (tokenizer.bin or tok*.bin) where that is what the loader reads
                if (Tokenization.TokenizerLoader.Llama2cSource(m.SourceDir) is { } bin)
                    File.Copy(bin, Path.Combine(tmp, Path.GetFileName(bin)));
            }
            extra?.Invoke(tmp);
            ct.ThrowIfCancellationRequested();
            if (Directory.Exists(outDir))
            {
                string old = $"{outDir}.old-{Guid.NewGuid().ToString("N")[..8]}";
                Directory.Move(outDir, old);
                Directory.Move(tmp, outDir);
                Directory.Delete(old, recursive: true);
            }
            else Directory.Move(tmp, outDir);
        }
        catch
        {
            try { if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true); } catch { /* best effort */ }
            throw;
        }
    }
}
