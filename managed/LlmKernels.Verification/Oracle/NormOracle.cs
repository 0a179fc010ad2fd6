using LlmKernels.Interop;

namespace LlmKernels.Verification.Oracle;

/// <summary>RMSNorm in double, as HF LlamaRMSNorm / GemmaRMSNorm and vLLM's rms_norm / fused_add_rms_norm.</summary>
public static class NormOracle
{
    /// <summary>out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w, with w = 1 + weight for Gemma.</summary>
    public static double[] RmsNorm(ReadOnlySpan<double> x, int rows, int hidden, ReadOnlySpan<double> weight, double eps, bool gemma)
    {
        var result = new double[rows * hidden];
        for (int r = 0; r < rows; r++)
        {
            var row = x.Slice(r * hidden, hidden);
            double meanSquare = 0;
            foreach (double v in row)
                meanSquare += v * v;
            meanSquare /= hidden;
            double scale = 1 / Math.Sqrt(meanSquare + eps);
            for (int j = 0; j < hidden; j++)
                result[r * hidden + j] = row[j] * scale * (gemma ? 1 + weight[j] : weight[j]);
        }
        return result;
    }

    /// <summary>vLLM's fused_add_rms_norm: the residual becomes x + residual, stored in the activations' dtype
    /// (so rounded to it), and the output is the RMSNorm of that stored residual.</summary>
    public static (double[] Output, double[] Residual) AddRmsNorm(ReadOnlySpan<double> x, ReadOnlySpan<double> residual,
        int rows, int hidden, ReadOnlySpan<double> weight, double eps, bool gemma, LlmkDtype dtype)
    {
        var sum = new double[rows * hidden];
        for (int i = 0; i < sum.Length; i++)
            sum[i] = DtypeRounding.Round(x[i] + residual[i], dtype);
        return (RmsNorm(sum, rows, hidden, weight, eps, gemma), sum);
    }
}
