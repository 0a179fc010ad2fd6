using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using LlmKernels.Interop;

namespace LlmKernels;

/// <summary>Which native build was loaded, from where, and why the CUDA build was not (if it was not).</summary>
public sealed record NativeLibraryInfo(string Path, bool IsCuda, string? CudaSkippedReason, IReadOnlyList<string> Attempts)
{
    /// <summary>llmk_version() of the loaded library, e.g. "0.1.0+cpu+cuda".</summary>
    public unsafe string Version => Native.Utf8(NativeMethods.llmk_version());
}

/// <summary>Resolves the "llmk" imports: libllmk_cuda when a CUDA device, driver and runtime libraries can be used,
/// otherwise the CPU build libllmk. Never silent: <see cref="Loaded"/> says what was chosen and why, and a failure
/// to load anything lists every path tried with the loader's own error.</summary>
public static class NativeLibraryLoader
{
    /// <summary>Set to a file path to load exactly that library.</summary>
    public const string PathVariable = "LLMK_NATIVE_LIBRARY";

    /// <summary>Set to "cpu" to skip the CUDA build, or "cuda" to require it.</summary>
    public const string BackendVariable = "LLMK_BACKEND";

    private static readonly Lazy<(nint Handle, NativeLibraryInfo Info)> Library = new(Load);

    /// <summary>The loaded library (loading it if needed).</summary>
    public static NativeLibraryInfo Loaded => Library.Value.Info;

    // A library registering its own DllImport resolver is exactly what CA2255 allows for.
#pragma warning disable CA2255
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register() =>
        NativeLibrary.SetDllImportResolver(typeof(NativeLibraryLoader).Assembly, Resolve);

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath) =>
        name == "llmk" ? Library.Value.Handle : IntPtr.Zero;

    private static (nint, NativeLibraryInfo) Load()
    {
        var attempts = new List<string>();
        var explicitPath = Environment.GetEnvironmentVariable(PathVariable);
        if (!string.IsNullOrEmpty(explicitPath))
        {
            if (TryLoad(explicitPath, attempts, out var handle))
                return (handle, new NativeLibraryInfo(explicitPath, HasCuda(handle), $"{PathVariable} chose this file", attempts));
            throw new DllNotFoundException($"LlmKernels: {PathVariable}={explicitPath} could not be loaded: {string.Join("; ", attempts)}");
        }

        var backend = Environment.GetEnvironmentVariable(BackendVariable)?.Trim().ToLowerInvariant();
        string? cudaSkipped;
        if (backend == "cpu")
            cudaSkipped = $"{BackendVariable}=cpu";
        else
        {
            foreach (var path in Candidates(CudaFileName))
            {
                if (!TryLoad(path, attempts, out var handle))
                    continue;
                var reason = CudaUnusableReason(handle);
                if (reason is null)
                    return (handle, new NativeLibraryInfo(path, true, null, attempts));
                attempts.Add($"{path}: loaded, but {reason}");
                NativeLibrary.Free(handle);
            }
            cudaSkipped = attempts.Count == 0
                ? $"no {CudaFileName} was found (looked in {string.Join(", ", SearchDirectories())})"
                : string.Join("; ", attempts);
            if (backend == "cuda")
                throw new DllNotFoundException($"LlmKernels: {BackendVariable}=cuda but the CUDA build cannot be used: {cudaSkipped}");
        }

        foreach (var path in Candidates(CpuFileName))
        {
            if (TryLoad(path, attempts, out var handle))
                return (handle, new NativeLibraryInfo(path, false, cudaSkipped, attempts));
        }
        throw new DllNotFoundException(
            $"LlmKernels: could not load the native library {CpuFileName} for {RuntimeInformation.RuntimeIdentifier}. " +
            $"Tried: {(attempts.Count == 0 ? "nothing found in " + string.Join(", ", SearchDirectories()) : string.Join("; ", attempts))}. " +
            $"Build it with `dotnet build` (which runs CMake) or set {PathVariable} to its path.");
    }

    private static string CpuFileName => FileName("llmk");
    private static string CudaFileName => FileName("llmk_cuda");

    private static string FileName(string name) =>
        OperatingSystem.IsWindows() ? $"{name}.dll" : OperatingSystem.IsMacOS() ? $"lib{name}.dylib" : $"lib{name}.so";

    private static IEnumerable<string> SearchDirectories()
    {
        var roots = new[] { AppContext.BaseDirectory, Path.GetDirectoryName(typeof(NativeLibraryLoader).Assembly.Location) }
            .Where(d => !string.IsNullOrEmpty(d)).Select(d => d!).Distinct();
        foreach (var root in roots)
        {
            yield return root;
            yield return Path.Combine(root, "runtimes", RuntimeInformation.RuntimeIdentifier, "native");
            yield return Path.Combine(root, "runtimes", PortableRid(), "native");
        }
    }

    private static string PortableRid()
    {
        var os = OperatingSystem.IsWindows() ? "win" : OperatingSystem.IsMacOS() ? "osx" : "linux";
        return $"{os}-{RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant()}";
    }

    private static IEnumerable<string> Candidates(string fileName) =>
        SearchDirectories().Distinct().Select(d => Path.Combine(d, fileName)).Where(File.Exists);

    private static bool TryLoad(string path, List<string> attempts, out nint handle)
    {
        try
        {
            handle = NativeLibrary.Load(path);
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            attempts.Add($"{path}: {e.Message}");
            handle = IntPtr.Zero;
            return false;
        }
    }

    private static unsafe bool HasCuda(nint handle) => CudaUnusableReason(handle) is null;

    /// <summary>Null when the library's CUDA backend sees a device; otherwise the library's own reason.</summary>
    private static unsafe string? CudaUnusableReason(nint handle)
    {
        if (!NativeLibrary.TryGetExport(handle, "llmk_cuda_device_count", out var countExport) ||
            !NativeLibrary.TryGetExport(handle, "llmk_last_error", out var errorExport))
            return "it does not export llmk_cuda_device_count";
        var count = (delegate* unmanaged<int*, LlmkStatus>)countExport;
        var lastError = (delegate* unmanaged<byte*>)errorExport;
        int devices;
        var status = count(&devices);
        if (status != LlmkStatus.Ok)
            return Native.Utf8(lastError());
        return devices > 0 ? null : "no CUDA device is visible";
    }
}
