using BenchmarkDotNet.Attributes;
using LlmKernels.Interop;

namespace LlmKernels.Benchmarks;

/// <summary>llmk_linear on the fast CPU kernels with a 4096 x 4096 weight in each format a GGUF file brings, beside
/// bf16: a decode step (1 row, read-bound: the weight's bytes over the time is its read bandwidth) and a 64-row
/// prefill chunk (compute-bound). The weight is quantized from the same random f32 values by llmk_convert.</summary>
public class QuantizedLinearBenchmarks
{
    private const int In = 4096, Out = 4096;

    [Params(LlmkDtype.Bf16, LlmkDtype.Q8_0, LlmkDtype.Q4_0, LlmkDtype.Q4_K, LlmkDtype.Q6_K)]
    public LlmkDtype Weight { get; set; }

    [Params(1, 64)]
    public int Rows { get; set; }

    private Context _ctx = null!;
    private Tensor _x = null!, _w = null!, _y = null!;

    [GlobalSetup]
    public void Setup()
    {
        _ctx = Context.CreateCpu(0, LlmkCpuKernels.Fast);
        var rng = new Random(3);
        using var wf = _ctx.FromFloats(Floats(rng, Out * In, 1 / MathF.Sqrt(In)), LlmkDtype.F32, Out, In);
        _w = _ctx.Allocate(Weight, Out, In);
        Kernels.Convert(_ctx, wf, _w);
        _x = _ctx.FromFloats(Floats(rng, Rows * In, 1), LlmkDtype.F32, Rows, In);
        _y = _ctx.Allocate(LlmkDtype.F32, Rows, Out);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _x.Dispose();
        _w.Dispose();
        _y.Dispose();
        _ctx.Dispose();
    }

    [Benchmark(Description = "Linear [Rows x 4096] . (4096 x 4096 weight)^T, fast CPU kernels")]
    public void Linear() => Kernels.Linear(_ctx, _x, _w, null, _y);

    private static float[] Floats(Random rng, int n, float scale)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++)
            v[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return v;
    }
}
