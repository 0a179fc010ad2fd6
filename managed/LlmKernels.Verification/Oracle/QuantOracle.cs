using LlmKernels.Interop;

namespace LlmKernels.Verification.Oracle;

/// <summary>GGUF's block formats read in double, straight from the bytes (ggml-common.h's layouts, written
/// here independently of the C dequantizers), and the 8-bit rounding of x that llmk_linear's contract
/// prescribes before a quantized weight.</summary>
public static class QuantOracle
{
    /// <summary>The values of <paramref name="elements"/> elements stored as whole blocks of <paramref name="dtype"/>.</summary>
    public static double[] Dequantize(LlmkDtype dtype, ReadOnlySpan<byte> blocks, long elements)
    {
        var (block, bytes) = Tensor.BlockOf(dtype);
        var result = new double[elements];
        for (long b = 0; b < elements / block; b++)
        {
            var src = blocks.Slice(checked((int)(b * bytes)), (int)bytes);
            var dst = result.AsSpan(checked((int)(b * block)), (int)block);
            switch (dtype)
            {
                case LlmkDtype.Q8_0: Q8_0(src, dst); break;
                case LlmkDtype.Q4_0: Q4_0(src, dst); break;
                case LlmkDtype.Q4_K: Q4_K(src, dst); break;
                case LlmkDtype.Q6_K: Q6_K(src, dst); break;
                default: throw new ArgumentException($"{dtype} is not quantized", nameof(dtype));
            }
        }
        return result;
    }

    private static double Half(ReadOnlySpan<byte> b, int at) => (double)BitConverter.UInt16BitsToHalf((ushort)(b[at] | b[at + 1] << 8));

    private static void Q8_0(ReadOnlySpan<byte> b, Span<double> x)
    {
        double d = Half(b, 0);
        for (int i = 0; i < 32; i++)
            x[i] = d * (sbyte)b[2 + i];
    }

    private static void Q4_0(ReadOnlySpan<byte> b, Span<double> x)
    {
        double d = Half(b, 0);
        for (int i = 0; i < 16; i++)
        {
            x[i] = d * ((b[2 + i] & 0xF) - 8);
            x[i + 16] = d * ((b[2 + i] >> 4) - 8);
        }
    }

    // d, dmin, 12 bytes of 6-bit (scale, min) pairs, 128 bytes of nibbles: sub-block j of 32 takes the low
    // nibbles of bytes 32 (j / 2) .. + 32 when j is even, their high nibbles when odd.
    private static void Q4_K(ReadOnlySpan<byte> b, Span<double> x)
    {
        double d = Half(b, 0), dmin = Half(b, 2);
        var s = b.Slice(4, 12);
        for (int j = 0; j < 8; j++)
        {
            int scale = j < 4 ? s[j] & 63 : (s[j + 4] & 0xF) | (s[j - 4] >> 6) << 4;
            int min = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | (s[j] >> 6) << 4;
            for (int l = 0; l < 32; l++)
            {
                int q = b[16 + 32 * (j / 2) + l];
                q = j % 2 == 0 ? q & 0xF : q >> 4;
                x[32 * j + l] = d * scale * q - dmin * min;
            }
        }
    }

    // ql[128] low nibbles, qh[64] high bit pairs, scales[16] int8, d: element 128 h + 32 c + l has its low bits
    // in ql[64 h + 32 (c % 2) + l] (nibble c / 2), its high bits at 2c in qh[32 h + l], scale 8 h + 2 c + l / 16.
    private static void Q6_K(ReadOnlySpan<byte> b, Span<double> x)
    {
        var ql = b[..128];
        var qh = b.Slice(128, 64);
        var scales = b.Slice(192, 16);
        double d = Half(b, 208);
        for (int h = 0; h < 2; h++)
            for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++)
                {
                    int low = (ql[64 * h + 32 * (c % 2) + l] >> (4 * (c / 2))) & 0xF;
                    int high = (qh[32 * h + l] >> (2 * c)) & 3;
                    x[128 * h + 32 * c + l] = d * (sbyte)scales[8 * h + 2 * c + l / 16] * ((low | high << 4) - 32);
                }
    }

    /// <summary>x rounded as llmk_linear rounds it before a quantized weight: per block of 32, in f32,
    /// d = max|x| / 127, q = round-to-nearest-even(x * (1 / d)); the value d * q (exact in double).</summary>
    public static double[] RoundQ8(ReadOnlySpan<float> x)
    {
        var result = new double[x.Length];
        for (int b = 0; b < x.Length; b += 32)
        {
            float amax = 0;
            for (int i = 0; i < 32; i++)
                amax = MathF.Max(amax, MathF.Abs(x[b + i]));
            float d = amax / 127f, id = d != 0 ? 1f / d : 0f;
            for (int i = 0; i < 32; i++)
                result[b + i] = (double)d * MathF.Round(x[b + i] * id, MidpointRounding.ToEven);
        }
        return result;
    }

    /// <summary>Random blocks of <paramref name="dtype"/> for <paramref name="elements"/> elements: random codes and
    /// scales (every code value, both scale signs where the format allows them) with values of order
    /// <paramref name="scale"/>.</summary>
    public static byte[] RandomBlocks(Random rng, LlmkDtype dtype, long elements, double scale)
    {
        var (block, bytes) = Tensor.BlockOf(dtype);
        var data = new byte[checked(elements / block * bytes)];
        rng.NextBytes(data);
        // Codes stay random; scales become finite halves of the right size: d * code is about scale.
        for (long b = 0; b < elements / block; b++)
        {
            int start = checked((int)(b * bytes));
            double Magnitude() => scale * (0.5 + rng.NextDouble());
            void SetHalf(int at, double value)
            {
                ushort bits = BitConverter.HalfToUInt16Bits((Half)value);
                data[start + at] = (byte)bits;
                data[start + at + 1] = (byte)(bits >> 8);
            }
            double sign = rng.Next(2) == 0 ? -1 : 1;
            switch (dtype)
            {
                case LlmkDtype.Q8_0: SetHalf(0, sign * Magnitude() / 64); break;
                case LlmkDtype.Q4_0: SetHalf(0, sign * Magnitude() / 4); break;
                case LlmkDtype.Q4_K: SetHalf(0, Magnitude() / (32 * 8)); SetHalf(2, Magnitude() / 32); break;
                case LlmkDtype.Q6_K: SetHalf(208, sign * Magnitude() / (64 * 16)); break;
            }
        }
        return data;
    }
}
