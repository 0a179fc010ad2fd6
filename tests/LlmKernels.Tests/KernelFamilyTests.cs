namespace LlmKernels.Tests;

/// <summary>A kernel family's shared checks (managed/LlmKernels.Verification), as its test class lists them.</summary>
public interface IKernelFamily<TSelf> where TSelf : IKernelFamily<TSelf>
{
    /// <summary>The checks to run on the CPU reference.</summary>
    static abstract IEnumerable<KernelCheck> CpuChecks();

    /// <summary>The checks to run on the CUDA backend: the CPU's, unless a family says otherwise.</summary>
    static virtual IEnumerable<KernelCheck> GpuChecks() => TSelf.CpuChecks();
}

/// <summary>What every kernel family's tests start with: a CPU context for the fixture (the fast kernels, as users
/// get them), and the family's checks against the double-precision oracle on every CPU flavour (the reference and
/// each fast one; a flavour this CPU cannot run is ignored with the reason) and, in category Gpu, on CUDA (ignored
/// with the reason when no device can be used, never passed).</summary>
public abstract class KernelFamilyTests<TFamily> where TFamily : IKernelFamily<TFamily>
{
    protected Context Cpu { get; private set; } = null!;

    [OneTimeSetUp]
    public void CreateContext() => Cpu = Context.CreateCpu();

    [OneTimeTearDown]
    public void DisposeContext() => Cpu.Dispose();

    public static IEnumerable<TestCaseData> CpuCases() =>
        from kernels in TestSupport.CpuFlavours
        from c in TFamily.CpuChecks()
        select new TestCaseData(kernels, c).SetName($"Cpu {Context.CpuKernelsName(kernels)} {c}");

    public static IEnumerable<TestCaseData> GpuCases() => TFamily.GpuChecks().Select(c => new TestCaseData(c).SetName($"Gpu {c}"));

    [TestCaseSource(nameof(CpuCases))]
    public void MatchesOracleOnCpu(LlmkCpuKernels kernels, KernelCheck check)
    {
        using var ctx = TestSupport.CpuOrIgnore(kernels);
        TestSupport.AssertPasses(check, ctx);
    }

    [Category("Gpu")]
    [TestCaseSource(nameof(GpuCases))]
    public void MatchesOracleOnCuda(KernelCheck check)
    {
        using var cuda = TestSupport.CudaOrIgnore();
        TestSupport.AssertPasses(check, cuda);
    }
}
