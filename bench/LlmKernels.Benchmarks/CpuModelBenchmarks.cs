using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;
using LlmKernels.Interop;

namespace LlmKernels.Benchmarks;

/// <summary>The heavier CPU kernels at small-model sizes: attention (flash vs naive), RoPE, a bf16-weight
/// linear layer beside a System.Numerics.Tensors dot-product baseline, and the MoE permute/unpermute pair.</summary>
public class CpuModelBenchmarks
{
    private const int Tokens = 256, Heads = 8, KvHeads = 2, HeadDim = 128;
    private const int Rows = 16, In = 2048, Out = 2048;
    private const int Experts = 8, TopK = 2, Hidden = 2048;

    /// <summary>The CPU kernels of the context: the reference and the fast path, side by side in one run.</summary>
    [Params(LlmkCpuKernels.Reference, LlmkCpuKernels.Fast)]
    public LlmkCpuKernels CpuKernels { get; set; }

    private Context _ctx = null!;
    private Tensor _q = null!, _k = null!, _v = null!, _attnOut = null!, _positions = null!;
    private Tensor _x = null!, _w = null!, _y = null!;
    private float[] _hx = null!, _hw = null!, _hy = null!;
    private Tensor _moeX = null!, _moeIds = null!, _permuted = null!, _offsets = null!, _sourceRows = null!, _permutedRows = null!, _moeWeights = null!, _moeOut = null!;

    [GlobalSetup]
    public void Setup()
    {
        _ctx = Context.CreateCpu(0, CpuKernels);
        var rng = new Random(2);
        _q = Random(rng, Tokens * Heads * HeadDim, LlmkDtype.F32, 1, Tokens, Heads, HeadDim);
        _k = Random(rng, Tokens * KvHeads * HeadDim, LlmkDtype.F32, 1, Tokens, KvHeads, HeadDim);
        _v = Random(rng, Tokens * KvHeads * HeadDim, LlmkDtype.F32, 1, Tokens, KvHeads, HeadDim);
        _attnOut = _ctx.Allocate(LlmkDtype.F32, 1, Tokens, Heads, HeadDim);
        _positions = _ctx.FromHost<int>(Enumerable.Range(0, Tokens).ToArray(), LlmkDtype.I32, Tokens);

        _hx = Floats(rng, Rows * In);
        _hw = Floats(rng, Out * In);
        _hy = new float[Rows * Out];
        _x = _ctx.FromFloats(_hx, LlmkDtype.F32, Rows, In);
        _w = _ctx.FromFloats(_hw, LlmkDtype.Bf16, Out, In);
        _y = _ctx.Allocate(LlmkDtype.F32, Rows, Out);

        _moeX = Random(rng, Tokens * Hidden, LlmkDtype.Bf16, Tokens, Hidden);
        var ids = new int[Tokens * TopK];
        for (int t = 0; t < Tokens; t++)
        {
            ids[t * TopK] = rng.Next(Experts);
            ids[t * TopK + 1] = (ids[t * TopK] + 1 + rng.Next(Experts - 1)) % Experts;
        }
        _moeIds = _ctx.FromHost<int>(ids, LlmkDtype.I32, Tokens, TopK);
        _permuted = _ctx.Allocate(LlmkDtype.Bf16, Tokens * TopK, Hidden);
        _offsets = _ctx.Allocate(LlmkDtype.I32, Experts + 1);
        _sourceRows = _ctx.Allocate(LlmkDtype.I32, Tokens * TopK);
        _permutedRows = _ctx.Allocate(LlmkDtype.I32, Tokens, TopK);
        _moeWeights = _ctx.FromFloats(Enumerable.Repeat(0.5f, Tokens * TopK).ToArray(), LlmkDtype.F32, Tokens, TopK);
        _moeOut = _ctx.Allocate(LlmkDtype.Bf16, Tokens, Hidden);
        Kernels.MoePermute(_ctx, _moeX, _moeIds, Experts, _permuted, _offsets, _sourceRows, _permutedRows);
    }

    [GlobalCleanup]
    public void Cleanup() => _ctx.Dispose();

    [Benchmark(Description = "Attention causal f32 256 tok, 8/2 heads, d128: flash")]
    public void AttentionFlash() => Kernels.Attention(_ctx, _q, _k, _v, null, LlmkAttentionParams.Create(causal: true, algorithm: LlmkAttentionAlgorithm.Flash), _attnOut);

    [Benchmark(Description = "Attention causal f32 256 tok, 8/2 heads, d128: naive")]
    public void AttentionNaive() => Kernels.Attention(_ctx, _q, _k, _v, null, LlmkAttentionParams.Create(causal: true, algorithm: LlmkAttentionAlgorithm.Naive), _attnOut);

    [Benchmark(Description = "RoPE NeoX f32 q+k, 256 tok, 8/2 heads, d128")]
    public void Rope() => Kernels.Rope(_ctx, _positions, LlmkRopeParams.Create(10000f), _q.Reshape(Tokens, Heads, HeadDim), _k.Reshape(Tokens, KvHeads, HeadDim));

    [Benchmark(Description = "Linear 16x2048 . (2048x2048 bf16)^T: llmk")]
    public void LinearNative() => Kernels.Linear(_ctx, _x, _w, null, _y);

    [Benchmark(Description = "Linear 16x2048 . (2048x2048 f32)^T: TensorPrimitives.Dot")]
    public void LinearManaged()
    {
        for (int r = 0; r < Rows; r++)
        {
            var row = _hx.AsSpan(r * In, In);
            for (int o = 0; o < Out; o++)
                _hy[r * Out + o] = TensorPrimitives.Dot(row, _hw.AsSpan(o * In, In));
        }
    }

    [Benchmark(Description = "MoE permute bf16 256 tok x 2048, 8 experts top-2")]
    public void MoePermute() => Kernels.MoePermute(_ctx, _moeX, _moeIds, Experts, _permuted, _offsets, _sourceRows, _permutedRows);

    [Benchmark(Description = "MoE unpermute bf16 256 tok x 2048, top-2")]
    public void MoeUnpermute() => Kernels.MoeUnpermute(_ctx, _permuted, _moeWeights, _permutedRows, _moeOut);

    private Tensor Random(Random rng, int n, LlmkDtype dtype, params long[] shape) => _ctx.FromFloats(Floats(rng, n), dtype, shape);

    private static float[] Floats(Random rng, int n)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++)
            v[i] = (float)(rng.NextDouble() * 2 - 1);
        return v;
    }
}
