using LlmKernels.Interop;

namespace LlmKernels.Verification.Oracle;

/// <summary>Rounding of a value to a storage dtype (round to nearest even), for oracles whose semantics include
/// an intermediate stored in the activations' dtype (e.g. the residual of the fused add + RMSNorm).</summary>
public static class DtypeRounding
{
    public static double Round(double value, LlmkDtype dtype) => dtype switch
    {
        LlmkDtype.F32 => (float)value,
        LlmkDtype.F16 => (double)(Half)value,
        LlmkDtype.Bf16 => RoundBf16((float)value),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a floating dtype"),
    };

    /// <summary>bf16 is the upper half of an f32: round the lower 16 bits away, ties to even.</summary>
    private static double RoundBf16(float value)
    {
        if (float.IsNaN(value))
            return double.NaN;
        uint bits = BitConverter.SingleToUInt32Bits(value);
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        return BitConverter.UInt32BitsToSingle(bits & 0xFFFF0000u);
    }
}
