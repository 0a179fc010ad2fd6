namespace LlmKernels.Models;

/// <summary>
/// Picks the next token from logits: greedy when <see cref="Temperature"/> is 0, otherwise a draw from
/// softmax(logits / temperature) restricted to the <see cref="TopK"/> best tokens (0: all) and then to the
/// smallest set whose probability reaches <see cref="TopP"/> (1: all), as transformers' warpers do.
/// The same seed gives the same tokens.
/// </summary>
public sealed class Sampler
{
    private readonly Random _random;

    public float Temperature { get; }
    public int TopK { get; }
    public float TopP { get; }
    public int Seed { get; }

    public Sampler(float temperature = 0, int topK = 0, float topP = 1, int seed = 0)
    {
        if (!(temperature >= 0) || float.IsInfinity(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "temperature must be finite and >= 0 (0 is greedy)");
        ArgumentOutOfRangeException.ThrowIfNegative(topK);
        if (!(topP > 0 && topP <= 1))
            throw new ArgumentOutOfRangeException(nameof(topP), topP, "top_p must be in (0, 1]");
        Temperature = temperature;
        TopK = topK;
        TopP = topP;
        Seed = seed;
        _random = new Random(seed);
    }

    public static Sampler Greedy { get; } = new();

    public int Sample(ReadOnlySpan<float> logits)
    {
        if (logits.Length == 0) throw new ArgumentException("no logits", nameof(logits));
        if (Temperature == 0) return ArgMax(logits);

        // Candidates best first; ties go to the lower id so the order is deterministic.
        var order = new int[logits.Length];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        var values = logits.ToArray();
        Array.Sort(order, (a, b) => values[b] != values[a] ? values[b].CompareTo(values[a]) : a.CompareTo(b));
        int kept = TopK > 0 ? Math.Min(TopK, order.Length) : order.Length;

        // Softmax over the kept candidates, in double, shifted by the maximum.
        var p = new double[kept];
        double max = values[order[0]] / Temperature, sum = 0;
        for (int i = 0; i < kept; i++) sum += p[i] = Math.Exp(values[order[i]] / Temperature - max);
        for (int i = 0; i < kept; i++) p[i] /= sum;

        // Top-p: the shortest prefix whose mass reaches TopP (at least one token).
        if (TopP < 1)
        {
            double mass = 0;
            int i = 0;
            while (i < kept && mass < TopP) mass += p[i++];
            kept = Math.Max(i, 1);
            sum = p.AsSpan(0, kept).ToArray().Sum();
        }
        else sum = 1;

        double r = _random.NextDouble() * sum;
        for (int i = 0; i < kept; i++)
        {
            r -= p[i];
            if (r < 0) return order[i];
        }
        return order[kept - 1];
    }

    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
            if (logits[i] > logits[best] || float.IsNaN(logits[best])) best = i;
        return best;
    }
}
