using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using LlmKernels.Interop;

namespace LlmKernels;

/// <summary>Which native build was loaded, from where, and why the CUDA build was not (if it was not).</summary>
/// <param name="Path">The file that was loaded.</param>
/// <param name="IsCuda">True when the loaded library's CUDA backend sees a device.</param>
/// <param name="CudaSkippedReason">Why the CUDA build is not in use (null when it is).</param>
/// <param name="Attempts">Every other library tried, each with why it was not used.</param>
/// <param name="Version">llmk_version() of the loaded library, e.g. "0.1.0+cpu".</param>
/// <param name="SearchedDirectories">Where the loader looked for the library files.</param>
public sealed record NativeLibraryInfo(string Path, bool IsCuda, string? CudaSkippedReason, IReadOnlyList<string> Attempts,
                                       string Version, IReadOnlyList<string> SearchedDirectories)
{
    /// <summary>A few lines for logs and bug reports: the library, its backend, why not CUDA, and what else was tried.</summary>
    public string Describe()
    {
        var text = new StringBuilder();
        text.Append($"LlmKernels native library {Path} (version {Version}, {(IsCuda ? "CUDA backend usable" : "CPU only")})");
        if (CudaSkippedReason is not null)
            text.Append($"\n  CUDA not used: {CudaSkippedReason}");
        // Attempts already given as the CUDA reason are not repeated.
        foreach (var attempt in Attempts.Where(a => CudaSkippedReason?.Contains(a, StringComparison.Ordinal) != true))
            text.Append($"\n  tried {attempt}");
        text.Append($"\n  searched: {string.Join(", ", SearchedDirectories)}");
        return text.ToString();
    }

    /// <inheritdoc cref="Describe"/>
    public override string ToString() => Describe();
}

/// <summary>Resolves the "llmk" imports: libllmk_cuda when a CUDA device, driver and runtime libraries can be used,
/// otherwise the CPU build libllmk. Never silent: <see cref="Loaded"/> says what was chosen and why, and a failure
/// to load anything lists every path tried with the loader's own error.</summary>
public static class NativeLibraryLoader
{
    /// <summary>Set to a file path to load exactly that library.</summary>
    public const string PathVariable = "LLMK_NATIVE_LIBRARY";

    /// <summary>Set to "cpu" to skip the CUDA build, "cuda" to require it, or "auto" (the default).</summary>
    public const string BackendVariable = "LLMK_BACKEND";

    private static readonly Lazy<(nint Handle, NativeLibraryInfo Info)> Library = new(() => ChooseLibrary(LoaderProbes.System()));

    /// <summary>The loaded library (loading it if needed). Throws <see cref="DllNotFoundException"/> listing every
    /// path tried when no library can be loaded.</summary>
    public static NativeLibraryInfo Loaded => Library.Value.Info;

    // A library registering its own DllImport resolver is exactly what CA2255 allows for.
#pragma warning disable CA2255
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register() =>
        NativeLibrary.SetDllImportResolver(typeof(NativeLibraryLoader).Assembly, Resolve);

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath) =>
        name == "llmk" ? Library.Value.Handle : IntPtr.Zero;

    /// <summary>The whole decision, over probes that tests replace: which file to load and why. Throws
    /// <see cref="DllNotFoundException"/> with every attempt when nothing usable loads.</summary>
    internal static (nint Handle, NativeLibraryInfo Info) ChooseLibrary(LoaderProbes probes)
    {
        var attempts = new List<string>();
        var directories = probes.SearchDirectories;
        NativeLibraryInfo Info(string path, nint handle, bool isCuda, string? skipped) =>
            new(path, isCuda, skipped, attempts, probes.Version(handle), directories);

        var backend = probes.GetEnvironment(BackendVariable)?.Trim().ToLowerInvariant();
        if (backend is not (null or "" or "auto" or "cpu" or "cuda"))
            throw new DllNotFoundException($"LlmKernels: {BackendVariable}={backend} is not one of cpu, cuda, auto.");

        var explicitPath = probes.GetEnvironment(PathVariable);
        if (!string.IsNullOrEmpty(explicitPath))
        {
            if (!probes.FileExists(explicitPath))
                throw new DllNotFoundException($"LlmKernels: {PathVariable}={explicitPath}: no such file. Tried only that path " +
                                               $"because {PathVariable} is set; unset it to search {string.Join(", ", directories)}.");
            var (handle, error) = TryLoad(probes, explicitPath);
            if (handle == 0)
                throw new DllNotFoundException($"LlmKernels: {PathVariable}={explicitPath} could not be loaded: {error}");
            var reason = probes.CudaUnusableReason(handle);
            if (reason is not null && backend == "cuda")
            {
                probes.Free(handle);
                throw new DllNotFoundException($"LlmKernels: {BackendVariable}=cuda but {PathVariable}={explicitPath} cannot use CUDA: {reason}");
            }
            return (handle, Info(explicitPath, handle, reason is null, reason is null ? null : $"{PathVariable}={explicitPath} was loaded; its CUDA backend: {reason}"));
        }

        string cudaSkipped;
        if (backend == "cpu")
            cudaSkipped = $"{BackendVariable}=cpu";
        else
        {
            var reasons = new List<string>();
            foreach (var (path, handle) in LoadCandidates(probes, probes.CudaFileName, reasons))
            {
                var reason = probes.CudaUnusableReason(handle);
                if (reason is null)
                {
                    attempts.AddRange(reasons);
                    return (handle, Info(path, handle, true, null));
                }
                reasons.Add($"{path}: loaded, but {reason}");
                probes.Free(handle);
            }
            attempts.AddRange(reasons);
            cudaSkipped = string.Join("; ", reasons);
            if (backend == "cuda")
                throw new DllNotFoundException($"LlmKernels: {BackendVariable}=cuda but the CUDA build cannot be used: {cudaSkipped}");
        }

        var cpuReasons = new List<string>();
        foreach (var (path, handle) in LoadCandidates(probes, probes.CpuFileName, cpuReasons))
        {
            attempts.AddRange(cpuReasons);
            return (handle, Info(path, handle, false, cudaSkipped));
        }
        attempts.AddRange(cpuReasons);
        throw new DllNotFoundException(
            $"LlmKernels: could not load the native library {probes.CpuFileName} for {RuntimeInformation.RuntimeIdentifier}. " +
            $"Tried: {string.Join("; ", attempts)}. Build it with `dotnet build` (which runs CMake), reference the LlmKernels " +
            $"package (which carries it under runtimes/<rid>/native), or set {PathVariable} to its path.");
    }

    /// <summary>Loads each existing copy of <paramref name="fileName"/> in the search directories in turn or, when
    /// there is none, the bare name through the system's own search (LD_LIBRARY_PATH, PATH: a library installed
    /// system-wide), yielding those that load and adding a reason to <paramref name="reasons"/> for each that does not.</summary>
    private static IEnumerable<(string Path, nint Handle)> LoadCandidates(LoaderProbes probes, string fileName, List<string> reasons)
    {
        var found = probes.SearchDirectories.Select(d => System.IO.Path.Combine(d, fileName)).Where(probes.FileExists).ToList();
        if (found.Count == 0)
        {
            var (handle, error) = TryLoad(probes, fileName);
            if (handle != 0)
                yield return (fileName, handle);
            else
                reasons.Add($"{fileName}: not found in {string.Join(", ", probes.SearchDirectories)}, nor by the system library search ({error})");
            yield break;
        }
        foreach (var path in found)
        {
            var (handle, error) = TryLoad(probes, path);
            if (handle != 0)
                yield return (path, handle);
            else
                reasons.Add($"{path}: {error}");
        }
    }

    private static (nint Handle, string? Error) TryLoad(LoaderProbes probes, string path)
    {
        var file = System.IO.Path.GetFileName(path);
        try
        {
            return (probes.Load(path), null);
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            var error = ExplainLoadError(e.Message, file);
            // A dependency shipped beside the library (the package's libgomp.so.1) is used only where the system has
            // none: loaded first, it satisfies the library's dependency by its soname. The system's copy wins otherwise,
            // which matters where the shipped one needs a newer glibc than the system has.
            var directory = System.IO.Path.GetDirectoryName(path);
            var beside = string.IsNullOrEmpty(directory) ? [] : MissingDependencies(e.Message, file)
                .Select(lib => System.IO.Path.Combine(directory, lib)).Where(probes.FileExists).ToList();
            if (beside.Count == 0)
                return (0, error);
            try
            {
                foreach (var dependency in beside)
                    probes.Load(dependency);
                return (probes.Load(path), null);
            }
            catch (Exception retry) when (retry is DllNotFoundException or BadImageFormatException)
            {
                return (0, $"{error}; after loading {string.Join(", ", beside)} from beside it: {ExplainLoadError(retry.Message, file)}");
            }
        }
    }

    // .NET wraps dlerror() in advice about strace and LD_DEBUG; the dynamic loader's own text is what says which
    // file is missing, so keep that and name the missing dependency.
    private static readonly Regex MissingDependency = new(@"(?<lib>[\w.+-]+\.so(\.[\d.]+)?): cannot open shared object file", RegexOptions.Compiled);

    /// <summary>The libraries the dynamic loader says it could not find, other than the one asked for (whose
    /// absence is already the message).</summary>
    private static IEnumerable<string> MissingDependencies(string message, string requestedFile) =>
        MissingDependency.Matches(message).Select(m => m.Groups["lib"].Value).Where(lib => lib != requestedFile).Distinct();

    /// <summary>The dynamic loader's message without .NET's generic advice, plus what a missing dependency means.</summary>
    internal static string ExplainLoadError(string message, string requestedFile)
    {
        var text = message.Trim();
        var marker = text.IndexOf("LD_DEBUG environment variable:", StringComparison.Ordinal);
        if (marker >= 0)
            text = text[(marker + "LD_DEBUG environment variable:".Length)..].Trim();
        // The loader repeats the file it was asked for; one line is enough.
        text = string.Join(" | ", text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Distinct());
        foreach (var lib in MissingDependencies(text, requestedFile))
        {
            var hint = lib switch
            {
                _ when lib.StartsWith("libcublas", StringComparison.Ordinal) =>
                    "cuBLAS, which the CUDA build needs, is missing (install the CUDA toolkit's cuBLAS, or add its directory to LD_LIBRARY_PATH)",
                _ when lib.StartsWith("libcudart", StringComparison.Ordinal) =>
                    "the CUDA runtime, which the CUDA build needs, is missing (install it, or add its directory to LD_LIBRARY_PATH)",
                _ when lib.StartsWith("libcuda.", StringComparison.Ordinal) =>
                    "the NVIDIA driver library is missing (no NVIDIA driver installed?)",
                _ when lib.StartsWith("libgomp", StringComparison.Ordinal) =>
                    "the OpenMP runtime is missing (install libgomp1, or keep the package's libgomp.so.1 beside libllmk)",
                _ => null,
            };
            text += hint is null ? $" [missing dependency: {lib}]" : $" [missing dependency: {lib}: {hint}]";
        }
        return text;
    }
}

/// <summary>What <see cref="NativeLibraryLoader.ChooseLibrary"/> asks of the system, replaceable in tests.</summary>
/// <param name="Load">Loads a library by path or bare name; throws DllNotFoundException with the OS loader's message.</param>
/// <param name="CudaUnusableReason">Null when the loaded library's CUDA backend sees a device, otherwise why not.</param>
internal sealed record LoaderProbes(
    Func<string, string?> GetEnvironment,
    IReadOnlyList<string> SearchDirectories,
    Func<string, bool> FileExists,
    Func<string, nint> Load,
    Action<nint> Free,
    Func<nint, string?> CudaUnusableReason,
    Func<nint, string> Version,
    string CpuFileName,
    string CudaFileName)
{
    /// <summary>The real process: its environment, file system and dynamic loader. <paramref name="environment"/>
    /// overrides variables (tests use it to try settings without changing the process).</summary>
    public static LoaderProbes System(IReadOnlyDictionary<string, string?>? environment = null) => new(
        name => environment is not null && environment.TryGetValue(name, out var value) ? value : Environment.GetEnvironmentVariable(name),
        DefaultSearchDirectories(),
        File.Exists,
        NativeLibrary.Load,
        NativeLibrary.Free,
        ExportedCudaUnusableReason,
        ExportedVersion,
        FileName("llmk"),
        FileName("llmk_cuda"));

    private static string FileName(string name) =>
        OperatingSystem.IsWindows() ? $"{name}.dll" : OperatingSystem.IsMacOS() ? $"lib{name}.dylib" : $"lib{name}.so";

    /// <summary>The application's folder and this assembly's, each with its runtimes/&lt;rid&gt;/native (where a
    /// NuGet package's native files land), then the host's native probing folders (the NuGet cache when the
    /// application runs from it).</summary>
    public static IReadOnlyList<string> DefaultSearchDirectories()
    {
        var directories = new List<string>();
        var roots = new[] { AppContext.BaseDirectory, Path.GetDirectoryName(typeof(NativeLibraryLoader).Assembly.Location) };
        foreach (var root in roots.Where(r => !string.IsNullOrEmpty(r)).Select(r => r!))
        {
            directories.Add(root);
            directories.Add(Path.Combine(root, "runtimes", RuntimeInformation.RuntimeIdentifier, "native"));
            directories.Add(Path.Combine(root, "runtimes", PortableRid(), "native"));
        }
        if (AppContext.GetData("NATIVE_DLL_SEARCH_DIRECTORIES") is string hostDirectories)
            directories.AddRange(hostDirectories.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries));
        return directories.Select(d => Path.TrimEndingDirectorySeparator(Path.GetFullPath(d)))
                          .Distinct(OperatingSystem.IsWindows() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal)
                          .ToList();
    }

    private static string PortableRid()
    {
        var os = OperatingSystem.IsWindows() ? "win" : OperatingSystem.IsMacOS() ? "osx" : "linux";
        return $"{os}-{RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant()}";
    }

    // Through the handle's exports, not the DllImports: those resolve through the loader being decided.
    private static unsafe string ExportedVersion(nint handle) =>
        NativeLibrary.TryGetExport(handle, "llmk_version", out var export)
            ? Native.Utf8(((delegate* unmanaged<byte*>)export)())
            : "unknown (no llmk_version export)";

    private static unsafe string? ExportedCudaUnusableReason(nint handle)
    {
        if (!NativeLibrary.TryGetExport(handle, "llmk_cuda_device_count", out var countExport) ||
            !NativeLibrary.TryGetExport(handle, "llmk_last_error", out var errorExport))
            return "it does not export llmk_cuda_device_count (not an llmk library?)";
        var count = (delegate* unmanaged<int*, LlmkStatus>)countExport;
        var lastError = (delegate* unmanaged<byte*>)errorExport;
        int devices = 0;
        var status = count(&devices);
        if (status != LlmkStatus.Ok)
        {
            // The backend's own words: no driver, driver too old (with both versions), no device...
            var message = Native.Utf8(lastError());
            return string.IsNullOrEmpty(message) ? $"llmk_cuda_device_count returned {status}" : message;
        }
        return devices > 0 ? null : "llmk_cuda_device_count: no CUDA device is visible";
    }
}
