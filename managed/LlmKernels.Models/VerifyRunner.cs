namespace LlmKernels.Models;

/// <summary>How far one tensor of the candidate is from the reference's.</summary>
public sealed record TensorDifference(string Name, double MaxAbs, double RelL2, int NonFinite)
{
    /// <summary>max |a - r|, ||a - r|| / ||r|| and the count of non-finite candidate values.</summary>
    public static TensorDifference Compute(string name, ReadOnlySpan<float> reference, ReadOnlySpan<float> candidate)
    {
        if (reference.Length != candidate.Length)
            throw new ArgumentException($"{name}: {reference.Length} reference values, {candidate.Length} candidate values");
        double maxAbs = 0, diff = 0, norm = 0;
        int nonFinite = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            if (!float.IsFinite(candidate[i])) { nonFinite++; continue; }
            double d = (double)candidate[i] - reference[i];
            maxAbs = Math.Max(maxAbs, Math.Abs(d));
            diff += d * d;
            norm += (double)reference[i] * reference[i];
        }
        return new TensorDifference(name, maxAbs, norm > 0 ? Math.Sqrt(diff / norm) : Math.Sqrt(diff), nonFinite);
    }

    public override string ToString() => $"{Name,-12} max|d| {MaxAbs:E2}  rel L2 {RelL2:E2}" + (NonFinite > 0 ? $"  NON-FINITE {NonFinite}" : "");
}

/// <summary>The comparison of two runs of one prompt: per-layer hidden states, logits, top-1 agreement.</summary>
public sealed record VerifyReport(IReadOnlyList<TensorDifference> Layers, TensorDifference Logits, int Positions, int Top1Agreements)
{
    public double Top1Agreement => Positions == 0 ? 1 : (double)Top1Agreements / Positions;
}

/// <summary>
/// Runs the same prompt through two models (e.g. the same checkpoint on the CPU and on CUDA, the CPU as
/// the reference, as ggml's compare-backends) and reports, per layer, how far the residual streams drift.
/// </summary>
public static class VerifyRunner
{
    /// <summary>Hidden states after the embedding and each layer, and the logits of every position.</summary>
    public static (List<float[]> Hidden, float[] Logits) Capture(LlamaModel model, IReadOnlyList<int> prompt)
    {
        var hidden = new List<float[]>();
        using var cache = model.CreateCache(prompt.Count);
        var logits = model.Forward(prompt.ToArray(), cache, allLogits: true, hook: (_, h) => hidden.Add(h.ToFloatArray()));
        return (hidden, logits);
    }

    public static VerifyReport Compare(LlamaModel reference, LlamaModel candidate, IReadOnlyList<int> prompt)
    {
        if (reference.Config.VocabSize != candidate.Config.VocabSize || reference.Config.NumHiddenLayers != candidate.Config.NumHiddenLayers)
            throw new ArgumentException("the two models have different configurations");
        var (refHidden, refLogits) = Capture(reference, prompt);
        var (candHidden, candLogits) = Capture(candidate, prompt);
        var layers = new List<TensorDifference>();
        for (int i = 0; i < refHidden.Count; i++)
            layers.Add(TensorDifference.Compute(i == 0 ? "embedding" : $"layer {i - 1}", refHidden[i], candHidden[i]));

        int vocab = reference.Config.VocabSize, agree = 0;
        for (int t = 0; t < prompt.Count; t++)
        {
            var r = refLogits.AsSpan(t * vocab, vocab);
            var c = candLogits.AsSpan(t * vocab, vocab);
            if (Sampler.ArgMax(r) == Sampler.ArgMax(c)) agree++;
        }
        return new VerifyReport(layers, TensorDifference.Compute("logits", refLogits, candLogits), prompt.Count, agree);
    }
}
