using System.Text.Json;

namespace LlmKernels.Models.Safetensors;

/// <summary>
/// The weights of a checkpoint directory: one <c>model.safetensors</c>, or shards listed by
/// <c>model.safetensors.index.json</c> ({"weight_map": {tensor: shard file}}), each shard opened once.
/// </summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly List<SafetensorsFile> _files;
    private readonly Dictionary<string, SafetensorsFile> _owner;

    public string Directory { get; }

    public IReadOnlyList<SafetensorsFile> Files => _files;

    /// <summary>Every tensor name, in shard then header order.</summary>
    public IEnumerable<string> TensorNames => _owner.Keys;

    private SafetensorsCheckpoint(string directory, List<SafetensorsFile> files, Dictionary<string, SafetensorsFile> owner)
    {
        Directory = directory;
        _files = files;
        _owner = owner;
    }

    /// <summary>Opens the weights of <paramref name="directory"/> (the index if present, else model.safetensors).</summary>
    public static SafetensorsCheckpoint Open(string directory)
    {
        string index = Path.Combine(directory, IndexFileName);
        if (File.Exists(index)) return OpenIndex(index);
        string single = Path.Combine(directory, SingleFileName);
        if (File.Exists(single)) return FromFiles(directory, [single]);
        var any = System.IO.Directory.Exists(directory)
            ? System.IO.Directory.GetFiles(directory, "*.safetensors").OrderBy(f => f, StringComparer.Ordinal).ToArray()
            : [];
        if (any.Length == 1) return FromFiles(directory, any);
        throw new ModelFormatException(any.Length == 0
            ? $"{directory}: no {IndexFileName} and no {SingleFileName}"
            : $"{directory}: {any.Length} .safetensors files but no {IndexFileName} to say which tensor is where");
    }

    /// <summary>Opens the shards an index names and checks that each listed tensor is in its shard.</summary>
    public static SafetensorsCheckpoint OpenIndex(string indexPath)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        var doc = ModelFile.ReadJson(indexPath);
        var weightMap = new List<(string Tensor, string Shard)>();
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException($"{indexPath}: expected an object with a 'weight_map' object");
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                    throw new ModelFormatException($"{indexPath}: weight_map['{entry.Name}'] is a JSON {entry.Value.ValueKind}, expected a shard file name");
                string shard = entry.Value.GetString()!;
                // A shard is a file beside the index: no directories, so an index cannot point elsewhere.
                if (shard.Length == 0 || shard != Path.GetFileName(shard) || shard is "." or "..")
                    throw new ModelFormatException($"{indexPath}: weight_map['{entry.Name}'] is '{shard}', expected a file name in the same directory");
                weightMap.Add((entry.Name, shard));
            }
        }
        if (weightMap.Count == 0)
            throw new ModelFormatException($"{indexPath}: weight_map is empty");

        var shards = weightMap.Select(w => w.Shard).Distinct(StringComparer.Ordinal).ToList();
        var files = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (var shard in shards) files[shard] = SafetensorsFile.Open(Path.Combine(directory, shard));
            var owner = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var (tensor, shard) in weightMap)
            {
                if (!files[shard].Contains(tensor))
                    throw new ModelFormatException($"{indexPath}: weight_map puts tensor '{tensor}' in {shard}, which has no such tensor");
                owner[tensor] = files[shard];
            }
            var result = new SafetensorsCheckpoint(directory, shards.Select(s => files[s]).ToList(), owner);
            files.Clear();
            return result;
        }
        finally
        {
            foreach (var f in files.Values) f.Dispose();
        }
    }

    /// <summary>A checkpoint from explicit files; a tensor name in two files is an error.</summary>
    public static SafetensorsCheckpoint FromFiles(string directory, IReadOnlyList<string> paths)
    {
        var files = new List<SafetensorsFile>();
        try
        {
            var owner = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var p in paths)
            {
                var f = SafetensorsFile.Open(p);
                files.Add(f);
                foreach (var t in f.Tensors)
                {
                    if (owner.TryGetValue(t.Name, out var other))
                        throw new ModelFormatException($"{p}: tensor '{t.Name}' is also in {other.Path}");
                    owner[t.Name] = f;
                }
            }
            var result = new SafetensorsCheckpoint(directory, files, owner);
            files = [];
            return result;
        }
        finally
        {
            foreach (var f in files) f.Dispose();
        }
    }

    public bool Contains(string name) => _owner.ContainsKey(name);

    /// <summary>The file holding <paramref name="name"/> and its entry; a <see cref="ModelFormatException"/> if absent.</summary>
    public (SafetensorsFile File, SafetensorsTensorInfo Info) Get(string name)
    {
        if (!_owner.TryGetValue(name, out var file))
            throw new ModelFormatException($"{Directory}: the checkpoint has no tensor '{name}'");
        return (file, file.GetTensor(name));
    }

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
