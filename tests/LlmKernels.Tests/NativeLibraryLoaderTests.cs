using System.Runtime.InteropServices;

namespace LlmKernels.Tests;

/// <summary>The loader's decision (<see cref="NativeLibraryLoader.ChooseLibrary"/>) over fake probes, one per way
/// loading can go wrong, and over the real system with the environment overridden (the process-wide loader has
/// already chosen, so the real cases run the same function without touching it).</summary>
public class NativeLibraryLoaderTests
{
    private const string AppDir = "/app";
    private const string NativeDir = "/app/runtimes/linux-x64/native";
    private const string Cpu = NativeDir + "/libllmk.so";
    private const string Cuda = NativeDir + "/libllmk_cuda.so";

    // .NET's message for a library whose dependency is missing, as NativeLibrary.Load gives it on Linux.
    private static string DotnetLoadError(string path, string loaderText) =>
        $"Unable to load shared library '{path}' or one of its dependencies. In order to help diagnose loading problems, " +
        "consider using a tool like strace. If you're using glibc, consider setting the LD_DEBUG environment variable: \n" +
        loaderText + "\n";

    /// <summary>A fake machine: which files exist, what loading each does (a handle, or an exception message),
    /// and what llmk_cuda_device_count says for each handle.</summary>
    private sealed class FakeSystem
    {
        public Dictionary<string, string?> Environment { get; } = new();
        public HashSet<string> Files { get; } = [];
        public Dictionary<string, string> LoadErrors { get; } = new();
        public Dictionary<nint, string?> CudaReasons { get; } = new();
        public List<string> Loaded { get; } = [];
        public List<nint> Freed { get; } = [];
        /// <summary>Library -> a dependency the system lacks; loading fails until that file was loaded by path.</summary>
        public Dictionary<string, string> MissingDependency { get; } = new();
        private readonly HashSet<string> loadedOk = [];
        private readonly Dictionary<string, nint> handles = new();

        public LoaderProbes Probes() => new(
            name => Environment.GetValueOrDefault(name),
            [AppDir, NativeDir],
            Files.Contains,
            path =>
            {
                Loaded.Add(path);
                if (LoadErrors.TryGetValue(path, out var error))
                    throw new DllNotFoundException(error);
                if (!Files.Contains(path))
                    throw new DllNotFoundException(DotnetLoadError(path, $"{path}: cannot open shared object file: No such file or directory"));
                if (MissingDependency.TryGetValue(path, out var dependency) && !loadedOk.Any(l => Path.GetFileName(l) == dependency))
                    throw new DllNotFoundException(DotnetLoadError(path, $"{dependency}: cannot open shared object file: No such file or directory"));
                loadedOk.Add(path);
                return Handle(path);
            },
            Freed.Add,
            handle => CudaReasons.GetValueOrDefault(handle, "this build of libllmk has no CUDA backend"),
            handle => handle == Handle(Cuda) ? "0.1.0+cpu+cuda" : "0.1.0+cpu",
            "libllmk.so",
            "libllmk_cuda.so");

        public nint Handle(string path)
        {
            if (!handles.TryGetValue(path, out var handle))
                handles[path] = handle = 100 + handles.Count;
            return handle;
        }

        /// <summary>Both builds installed; the CUDA one sees a device unless told otherwise.</summary>
        public static FakeSystem WithBothBuilds(string? cudaReason = null)
        {
            var system = new FakeSystem();
            system.Files.Add(Cpu);
            system.Files.Add(Cuda);
            system.CudaReasons[system.Handle(Cuda)] = cudaReason;
            return system;
        }
    }

    [Test]
    public void PrefersTheCudaBuildWhenItSeesADevice()
    {
        var system = FakeSystem.WithBothBuilds();
        var (handle, info) = NativeLibraryLoader.ChooseLibrary(system.Probes());
        Assert.Multiple(() =>
        {
            Assert.That(handle, Is.EqualTo(system.Handle(Cuda)));
            Assert.That(info.Path, Is.EqualTo(Cuda));
            Assert.That(info.IsCuda, Is.True);
            Assert.That(info.CudaSkippedReason, Is.Null);
            Assert.That(info.Version, Is.EqualTo("0.1.0+cpu+cuda"));
            Assert.That(system.Loaded, Is.EqualTo(new[] { Cuda }), "the CPU build is not loaded when CUDA works");
        });
    }

    [Test]
    public void MissingCudaBuildFallsBackToCpuAndSaysWhereItLooked()
    {
        var system = new FakeSystem();
        system.Files.Add(Cpu);
        var (handle, info) = NativeLibraryLoader.ChooseLibrary(system.Probes());
        Assert.Multiple(() =>
        {
            Assert.That(handle, Is.EqualTo(system.Handle(Cpu)));
            Assert.That(info.IsCuda, Is.False);
            Assert.That(info.CudaSkippedReason, Does.Contain("libllmk_cuda.so: not found in /app, /app/runtimes/linux-x64/native"));
            Assert.That(info.CudaSkippedReason, Does.Contain("system library search"));
        });
    }

    [TestCase("libcublas.so.12", "cuBLAS")]
    [TestCase("libcudart.so.12", "CUDA runtime")]
    [TestCase("libcuda.so.1", "NVIDIA driver")]
    public void CudaBuildWithAMissingCudaLibraryNamesIt(string library, string meaning)
    {
        var system = FakeSystem.WithBothBuilds();
        system.LoadErrors[Cuda] = DotnetLoadError(Cuda, $"{library}: cannot open shared object file: No such file or directory");
        var (_, info) = NativeLibraryLoader.ChooseLibrary(system.Probes());
        TestContext.Out.WriteLine(info.CudaSkippedReason);
        Assert.Multiple(() =>
        {
            Assert.That(info.Path, Is.EqualTo(Cpu));
            Assert.That(info.CudaSkippedReason, Does.StartWith($"{Cuda}: {library}: cannot open shared object file"));
            Assert.That(info.CudaSkippedReason, Does.Contain($"missing dependency: {library}: ").And.Contain(meaning));
            Assert.That(info.CudaSkippedReason, Does.Not.Contain("strace"), ".NET's generic advice is dropped");
        });
    }

    [TestCase("llmk_cuda_device_count: driver too old (driver 11.4 < runtime 12.2)")]
    [TestCase("llmk_cuda_device_count: no CUDA-capable device is visible (driver 12.4, runtime 12.2; check CUDA_VISIBLE_DEVICES)")]
    [TestCase("llmk_cuda_device_count: no NVIDIA driver found (libcuda could not be loaded); CUDA runtime 11.8")]
    public void CudaBuildThatCannotRunGivesTheBackendsOwnReasonAndIsFreed(string nativeMessage)
    {
        var system = FakeSystem.WithBothBuilds(cudaReason: nativeMessage);
        var (_, info) = NativeLibraryLoader.ChooseLibrary(system.Probes());
        Assert.Multiple(() =>
        {
            Assert.That(info.Path, Is.EqualTo(Cpu));
            Assert.That(info.IsCuda, Is.False);
            Assert.That(info.CudaSkippedReason, Is.EqualTo($"{Cuda}: loaded, but {nativeMessage}"));
            Assert.That(system.Freed, Is.EqualTo(new[] { system.Handle(Cuda) }));
            Assert.That(info.Describe(), Does.Contain($"CUDA not used: {Cuda}: loaded, but {nativeMessage}"));
        });
    }

    [Test]
    public void BackendCpuNeverTouchesTheCudaBuild()
    {
        var system = FakeSystem.WithBothBuilds();
        system.Environment[NativeLibraryLoader.BackendVariable] = " CPU ";
        var (_, info) = NativeLibraryLoader.ChooseLibrary(system.Probes());
        Assert.Multiple(() =>
        {
            Assert.That(info.Path, Is.EqualTo(Cpu));
            Assert.That(info.CudaSkippedReason, Is.EqualTo("LLMK_BACKEND=cpu"));
            Assert.That(system.Loaded, Is.EqualTo(new[] { Cpu }));
        });
    }

    [Test]
    public void BackendCudaFailsWithTheReasonInsteadOfFallingBack()
    {
        var system = FakeSystem.WithBothBuilds(cudaReason: "llmk_cuda_device_count: driver too old (driver 11.4 < runtime 12.2)");
        system.Environment[NativeLibraryLoader.BackendVariable] = "cuda";
        var e = Assert.Throws<DllNotFoundException>(() => NativeLibraryLoader.ChooseLibrary(system.Probes()))!;
        Assert.That(e.Message, Does.Contain("LLMK_BACKEND=cuda").And.Contain("driver too old").And.Contain(Cuda));
        Assert.That(system.Loaded, Does.Not.Contain(Cpu));
    }

    [Test]
    public void UnknownBackendIsAnErrorNotAGuess()
    {
        var system = FakeSystem.WithBothBuilds();
        system.Environment[NativeLibraryLoader.BackendVariable] = "gpu";
        var e = Assert.Throws<DllNotFoundException>(() => NativeLibraryLoader.ChooseLibrary(system.Probes()))!;
        Assert.That(e.Message, Does.Contain("LLMK_BACKEND=gpu").And.Contain("cpu, cuda, auto"));
        Assert.That(system.Loaded, Is.Empty);
    }

    [Test]
    public void ExplicitPathToAMissingFileListsWhatWasTried()
    {
        var system = FakeSystem.WithBothBuilds();
        system.Environment[NativeLibraryLoader.PathVariable] = "/opt/llmk/libllmk.so";
        var e = Assert.Throws<DllNotFoundException>(() => NativeLibraryLoader.ChooseLibrary(system.Probes()))!;
        Assert.That(e.Message, Does.Contain("LLMK_NATIVE_LIBRARY=/opt/llmk/libllmk.so: no such file"));
        Assert.That(system.Loaded, Is.Empty, "with an explicit path nothing else is loaded");
    }

    [Test]
    public void ExplicitPathIsUsedAndItsCudaStateReported()
    {
        var system = FakeSystem.WithBothBuilds();
        system.Environment[NativeLibraryLoader.PathVariable] = Cpu;
        var (_, info) = NativeLibraryLoader.ChooseLibrary(system.Probes());
        Assert.That(info.Path, Is.EqualTo(Cpu));
        Assert.That(info.CudaSkippedReason, Does.Contain("LLMK_NATIVE_LIBRARY").And.Contain("no CUDA backend"));
    }

    [Test]
    public void ExplicitPathWithoutCudaAndBackendCudaIsAnError()
    {
        var system = FakeSystem.WithBothBuilds();
        system.Environment[NativeLibraryLoader.PathVariable] = Cpu;
        system.Environment[NativeLibraryLoader.BackendVariable] = "cuda";
        var e = Assert.Throws<DllNotFoundException>(() => NativeLibraryLoader.ChooseLibrary(system.Probes()))!;
        Assert.That(e.Message, Does.Contain("LLMK_BACKEND=cuda").And.Contain(Cpu).And.Contain("no CUDA backend"));
        Assert.That(system.Freed, Is.EqualTo(new[] { system.Handle(Cpu) }));
    }

    [Test]
    public void NothingLoadableListsEveryAttemptWithItsError()
    {
        var system = FakeSystem.WithBothBuilds();
        system.LoadErrors[Cuda] = DotnetLoadError(Cuda, "libcublas.so.12: cannot open shared object file: No such file or directory");
        system.LoadErrors[Cpu] = DotnetLoadError(Cpu, "libgomp.so.1: cannot open shared object file: No such file or directory");
        var e = Assert.Throws<DllNotFoundException>(() => NativeLibraryLoader.ChooseLibrary(system.Probes()))!;
        TestContext.Out.WriteLine(e.Message);
        Assert.That(e.Message, Does.Contain($"{Cuda}: libcublas.so.12").And.Contain($"{Cpu}: libgomp.so.1").And.Contain("libgomp1")
                                   .And.Contain("LLMK_NATIVE_LIBRARY"));
    }

    [Test]
    public void ABrokenCopyIsSkippedForTheNextOne()
    {
        var system = new FakeSystem();
        const string first = AppDir + "/libllmk.so";
        system.Files.Add(first);
        system.Files.Add(Cpu);
        system.LoadErrors[first] = DotnetLoadError(first, $"{first}: invalid ELF header");
        var (_, info) = NativeLibraryLoader.ChooseLibrary(system.Probes());
        Assert.That(info.Path, Is.EqualTo(Cpu));
        Assert.That(info.Attempts, Has.Some.EqualTo($"{first}: {first}: invalid ELF header"));
        Assert.That(info.Describe(), Does.Contain($"tried {first}: {first}: invalid ELF header"));
    }

    [Test]
    public void ADependencyShippedBesideTheLibraryIsLoadedOnlyWhenTheSystemLacksIt()
    {
        const string gomp = NativeDir + "/libgomp.so.1";
        var system = new FakeSystem();
        system.Files.Add(Cpu);
        system.Files.Add(gomp);
        system.Environment[NativeLibraryLoader.BackendVariable] = "cpu";
        var (_, withSystemCopy) = NativeLibraryLoader.ChooseLibrary(system.Probes());
        Assert.That(withSystemCopy.Path, Is.EqualTo(Cpu));
        Assert.That(system.Loaded, Is.EqualTo(new[] { Cpu }), "the system's libgomp serves when it is there");

        system.Loaded.Clear();
        system.MissingDependency[Cpu] = "libgomp.so.1";
        var (handle, info) = NativeLibraryLoader.ChooseLibrary(system.Probes());
        Assert.Multiple(() =>
        {
            Assert.That(handle, Is.EqualTo(system.Handle(Cpu)));
            Assert.That(info.Path, Is.EqualTo(Cpu));
            Assert.That(system.Loaded, Is.EqualTo(new[] { Cpu, gomp, Cpu }), "tried, loaded the shipped libgomp, retried");
        });
    }

    // ---- the real system, environment overridden ----

    [Test]
    public void RealLoaderWithBackendCpuLoadsTheCpuBuild()
    {
        var (handle, info) = NativeLibraryLoader.ChooseLibrary(LoaderProbes.System(new Dictionary<string, string?>
        {
            [NativeLibraryLoader.PathVariable] = null,
            [NativeLibraryLoader.BackendVariable] = "cpu",
        }));
        try
        {
            TestContext.Out.WriteLine(info.Describe());
            Assert.Multiple(() =>
            {
                Assert.That(Path.GetFileName(info.Path), Is.EqualTo(OperatingSystem.IsWindows() ? "llmk.dll" : "libllmk.so"));
                Assert.That(File.Exists(info.Path), Is.True);
                Assert.That(info.IsCuda, Is.False);
                Assert.That(info.CudaSkippedReason, Is.EqualTo("LLMK_BACKEND=cpu"));
                Assert.That(info.Version, Does.StartWith($"{LlmkConstants.VersionMajor}.{LlmkConstants.VersionMinor}."));
                Assert.That(info.SearchedDirectories, Does.Contain(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)));
            });
        }
        finally
        {
            NativeLibrary.Free(handle);
        }
    }

    [Test]
    public void RealLoaderWithAMissingExplicitPathThrowsNamingIt()
    {
        var missing = Path.Combine(Path.GetTempPath(), $"llmk-missing-{Guid.NewGuid():N}", "libllmk.so");
        var e = Assert.Throws<DllNotFoundException>(() => NativeLibraryLoader.ChooseLibrary(LoaderProbes.System(
            new Dictionary<string, string?> { [NativeLibraryLoader.PathVariable] = missing })))!;
        TestContext.Out.WriteLine(e.Message);
        Assert.That(e.Message, Does.Contain($"LLMK_NATIVE_LIBRARY={missing}: no such file")
                                   .And.Contain(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)));
    }

    [Test]
    public void RealLoaderGivesTheDynamicLoadersErrorForAFileThatIsNoLibrary()
    {
        var notALibrary = Path.Combine(Path.GetTempPath(), $"llmk-not-a-library-{Guid.NewGuid():N}.so");
        File.WriteAllText(notALibrary, "this is not a shared library");
        try
        {
            var e = Assert.Throws<DllNotFoundException>(() => NativeLibraryLoader.ChooseLibrary(LoaderProbes.System(
                new Dictionary<string, string?> { [NativeLibraryLoader.PathVariable] = notALibrary })))!;
            TestContext.Out.WriteLine(e.Message);
            Assert.That(e.Message, Does.Contain($"LLMK_NATIVE_LIBRARY={notALibrary} could not be loaded"));
            if (OperatingSystem.IsLinux())
                Assert.That(e.Message, Does.Contain("invalid ELF header").Or.Contain("file too short"));
        }
        finally
        {
            File.Delete(notALibrary);
        }
    }

    [Test]
    public void TheProcessLoaderDescribesItsChoice()
    {
        var info = NativeLibraryLoader.Loaded;
        var text = info.Describe();
        TestContext.Out.WriteLine(text);
        Assert.That(text, Does.Contain(info.Path).And.Contain(info.Version).And.Contain("searched: "));
        if (!info.IsCuda)
            Assert.That(text, Does.Contain("CUDA not used: " + info.CudaSkippedReason));
    }
}
