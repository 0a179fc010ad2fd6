using LlmKernels.Interop;

namespace LlmKernels.Verification.Oracle;

/// <summary>Gated activations in double, as vLLM's silu_and_mul / gelu_tanh_and_mul: out = act(gate) * up.</summary>
public static class ActivationOracle
{
    /// <summary>x * sigmoid(x).</summary>
    public static double Silu(double x) => x / (1 + Math.Exp(-x));

    /// <summary>torch.nn.functional.gelu(x, approximate="tanh").</summary>
    public static double GeluTanh(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    public static double Apply(LlmkActivation activation, double x) => activation switch
    {
        LlmkActivation.Silu => Silu(x),
        LlmkActivation.GeluTanh => GeluTanh(x),
        _ => throw new ArgumentOutOfRangeException(nameof(activation), activation, null),
    };

    /// <summary>act(gate[i]) * up[i] for every element (gate and up of the same shape, flattened).</summary>
    public static double[] Gated(LlmkActivation activation, ReadOnlySpan<double> gate, ReadOnlySpan<double> up)
    {
        var result = new double[gate.Length];
        for (int i = 0; i < gate.Length; i++)
            result[i] = Apply(activation, gate[i]) * up[i];
        return result;
    }

    /// <summary>The fused form: gateUp is [rows, 2d], the first d columns the gate, the last d the up projection.</summary>
    public static double[] GatedFused(LlmkActivation activation, ReadOnlySpan<double> gateUp, int rows, int d)
    {
        var result = new double[rows * d];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < d; j++)
                result[r * d + j] = Apply(activation, gateUp[r * 2 * d + j]) * gateUp[r * 2 * d + d + j];
        return result;
    }
}
