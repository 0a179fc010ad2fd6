using System.CommandLine;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using LlmKernels.Interop;
using Spectre.Console;

namespace LlmKernels.Cli;

/// <summary>`llmk info`: which native library was loaded and why, what the CPU offers and which CPU kernels run
/// (flavour, threads), which CUDA devices the library sees (or why none). The first thing to run when the GPU is not used.</summary>
internal static class InfoCommand
{
    public static Command Create(CliConsole io)
    {
        var command = new Command("info", "The native library in use and why, CPU features, CUDA devices");
        command.SetAction(_ => CommandRunner.Run(io, () => Run(io)));
        return command;
    }

    private static int Run(CliConsole io)
    {
        var library = NativeLibraryLoader.Loaded;
        var grid = new Grid().AddColumn(new GridColumn().NoWrap()).AddColumn();
        void Row(string name, string value) => grid.AddRow($"[bold]{Markup.Escape(name)}[/]", Markup.Escape(value));

        Row("library", library.Path);
        Row("version", library.Version);
        Row("backend", library.IsCuda ? "CUDA build, device usable" : "CPU");
        if (library.CudaSkippedReason is not null) Row("CUDA not used", library.CudaSkippedReason);
        // Attempts the CUDA reason already quotes are not repeated.
        foreach (var attempt in library.Attempts.Where(a => library.CudaSkippedReason?.Contains(a, StringComparison.Ordinal) != true))
            Row("also tried", attempt);
        Row("searched", string.Join(", ", library.SearchedDirectories));
        Row("runtime", $"{RuntimeInformation.FrameworkDescription} on {RuntimeInformation.RuntimeIdentifier}, {Environment.ProcessorCount} logical processors");
        Row("CPU features", string.Join(" ", CpuFeatures().DefaultIfEmpty("none detected")));
        using (var cpu = Context.CreateCpu())
            Row("CPU kernels", $"{cpu} by default (--threads 0: one per physical core); --backend cpu-reference runs the reference");
        foreach (var kernels in new[] { LlmkCpuKernels.Portable, LlmkCpuKernels.Avx2, LlmkCpuKernels.Avx512 })
            Row($"  {Context.CpuKernelsName(kernels)}", Context.CpuKernelsAvailable(kernels, out var why) ? "available" : why!);
        foreach (var line in CudaDevices()) Row("CUDA", line);
        io.Out.Write(grid);
        return 0;
    }

    /// <summary>What the JIT can use here, as System.Runtime.Intrinsics reports it. .NET has no F16C class, so on
    /// Linux that flag (half-float conversion, which the native CPU code may use) comes from /proc/cpuinfo.</summary>
    private static IEnumerable<string> CpuFeatures()
    {
        var features = new (string Name, bool Supported)[]
        {
            ("SSE4.2", Sse42.IsSupported), ("AVX", Avx.IsSupported), ("AVX2", Avx2.IsSupported), ("FMA", Fma.IsSupported),
            ("BMI2", Bmi2.IsSupported), ("AVX-VNNI", AvxVnni.IsSupported), ("AVX-512F", Avx512F.IsSupported),
            ("AVX-512BW", Avx512BW.IsSupported), ("AVX-512DQ", Avx512DQ.IsSupported), ("AVX-512VBMI", Avx512Vbmi.IsSupported),
            ("AVX10.1", Avx10v1.IsSupported),
            ("AdvSimd", AdvSimd.IsSupported), ("ARM dot product", Dp.IsSupported),
        };
        foreach (var (name, supported) in features)
            if (supported) yield return name;
        if (OperatingSystem.IsLinux() && File.Exists("/proc/cpuinfo") &&
            File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal)) is { } flags &&
            flags.Split(' ', ':', '\t').Contains("f16c"))
            yield return "F16C";
    }

    /// <summary>One line per device from llmk_cuda_device_describe, or the library's reason for having none.</summary>
    private static unsafe List<string> CudaDevices()
    {
        int count = 0;
        var status = NativeMethods.llmk_cuda_device_count(&count);
        if (status != LlmkStatus.Ok)
            return [$"no devices: {LastError(status)}"];
        if (count == 0)
            return ["no devices: llmk_cuda_device_count found none"];
        var lines = new List<string>();
        var buffer = new byte[512];
        for (int i = 0; i < count; i++)
        {
            fixed (byte* p = buffer)
            {
                var s = NativeMethods.llmk_cuda_device_describe(i, p, (nuint)buffer.Length);
                lines.Add(s == LlmkStatus.Ok ? $"{i}: {Marshal.PtrToStringUTF8((nint)p)}" : $"{i}: {LastError(s)}");
            }
        }
        return lines;
    }

    private static unsafe string LastError(LlmkStatus status) =>
        Marshal.PtrToStringUTF8((nint)NativeMethods.llmk_last_error()) is { Length: > 0 } message ? $"{message} ({status})" : status.ToString();
}
