using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;
using LlmKernels.Interop;

namespace LlmKernels.Benchmarks;

/// <summary>The CPU kernels at decoder sizes (hidden 4096, a 64-token prefill chunk), each beside a pure-managed
/// System.Numerics.Tensors baseline where one exists.</summary>
[MemoryDiagnoser]
public class CpuKernelBenchmarks
{
    private const int Rows = 64, Hidden = 4096, Intermediate = 11008;
    /// <summary>The CPU kernels of the context: the reference and the fast path, side by side in one run.</summary>
    [Params(LlmkCpuKernels.Reference, LlmkCpuKernels.Fast)]
    public LlmkCpuKernels CpuKernels { get; set; }

    private Context _ctx = null!;
    private Tensor _x = null!, _weight = null!, _normOut = null!, _gateUp = null!, _actOut = null!;
    private float[] _hx = null!, _hweight = null!, _hout = null!, _hgate = null!, _hup = null!, _hact = null!;

    [GlobalSetup]
    public void Setup()
    {
        _ctx = Context.CreateCpu(0, CpuKernels);
        var rng = new Random(1);
        _hx = Random(rng, Rows * Hidden);
        _hweight = Random(rng, Hidden);
        _hout = new float[Rows * Hidden];
        _x = _ctx.FromFloats(_hx, LlmkDtype.F32, Rows, Hidden);
        _weight = _ctx.FromFloats(_hweight, LlmkDtype.F32, Hidden);
        _normOut = _ctx.Allocate(LlmkDtype.F32, Rows, Hidden);
        _hgate = Random(rng, Rows * Intermediate);
        _hup = Random(rng, Rows * Intermediate);
        _hact = new float[Rows * Intermediate];
        var gateUp = new float[Rows * 2 * Intermediate];
        for (int r = 0; r < Rows; r++)
        {
            _hgate.AsSpan(r * Intermediate, Intermediate).CopyTo(gateUp.AsSpan(r * 2 * Intermediate));
            _hup.AsSpan(r * Intermediate, Intermediate).CopyTo(gateUp.AsSpan(r * 2 * Intermediate + Intermediate));
        }
        _gateUp = _ctx.FromFloats(gateUp, LlmkDtype.F32, Rows, 2 * Intermediate);
        _actOut = _ctx.Allocate(LlmkDtype.F32, Rows, Intermediate);
    }

    [GlobalCleanup]
    public void Cleanup() => _ctx.Dispose();

    [Benchmark(Description = "RMSNorm f32 [64 x 4096]: llmk")]
    public void RmsNormNative() => Kernels.RmsNorm(_ctx, _x, _weight, 1e-5f, _normOut);

    [Benchmark(Description = "RMSNorm f32 [64 x 4096]: System.Numerics.Tensors")]
    public void RmsNormManaged()
    {
        for (int r = 0; r < Rows; r++)
        {
            var row = _hx.AsSpan(r * Hidden, Hidden);
            var output = _hout.AsSpan(r * Hidden, Hidden);
            float norm = TensorPrimitives.SumOfSquares(row);
            float inv = 1f / MathF.Sqrt(norm / Hidden + 1e-5f);
            TensorPrimitives.Multiply(row, inv, output);
            TensorPrimitives.Multiply(output, _hweight, output);
        }
    }

    [Benchmark(Description = "SwiGLU f32 [64 x 11008]: llmk")]
    public void SwigluNative() => Kernels.GatedActivation(_ctx, LlmkActivation.Silu, _gateUp, _actOut);

    [Benchmark(Description = "SwiGLU f32 [64 x 11008]: System.Numerics.Tensors")]
    public void SwigluManaged()
    {
        // silu(g) * u = g * sigmoid(g) * u
        TensorPrimitives.Sigmoid(_hgate, _hact);
        TensorPrimitives.Multiply(_hact, _hgate, _hact);
        TensorPrimitives.Multiply(_hact, _hup, _hact);
    }

    private static float[] Random(Random rng, int n)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++)
            v[i] = (float)(rng.NextDouble() * 2 - 1);
        return v;
    }
}

/// <summary>The fixed cost of crossing into libllmk: a call that validates nothing and returns.</summary>
public class InteropOverheadBenchmarks
{
    [Benchmark(Description = "P/Invoke llmk_dtype_size")]
    public nuint TrivialCall() => NativeMethods.llmk_dtype_size((int)LlmkDtype.Bf16);
}
