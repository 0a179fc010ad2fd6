using LlmKernels.Interop;

namespace LlmKernels.Verification.Oracle;

/// <summary>torch's add, Tensor.to(dtype) and nn.Embedding, in double.</summary>
public static class ElementwiseOracle
{
    public static double[] Add(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        var result = new double[a.Length];
        for (int i = 0; i < a.Length; i++)
            result[i] = a[i] + b[i];
        return result;
    }

    /// <summary>Each value rounded once, to nearest even, to <paramref name="dtype"/>.</summary>
    public static double[] Convert(ReadOnlySpan<double> values, LlmkDtype dtype)
    {
        var result = new double[values.Length];
        for (int i = 0; i < values.Length; i++)
            result[i] = DtypeRounding.Round(values[i], dtype);
        return result;
    }

    /// <summary>out[t, :] = table[ids[t], :], stored in <paramref name="outDtype"/>.</summary>
    public static double[] Embedding(ReadOnlySpan<double> table, int hidden, ReadOnlySpan<long> ids, LlmkDtype outDtype)
    {
        var result = new double[ids.Length * hidden];
        for (int t = 0; t < ids.Length; t++)
            for (int h = 0; h < hidden; h++)
                result[t * hidden + h] = DtypeRounding.Round(table[(int)ids[t] * hidden + h], outDtype);
        return result;
    }
}
