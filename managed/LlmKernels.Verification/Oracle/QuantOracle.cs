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

    /// <summary>x rounded as llmk_linear rounds it before a weight of <paramref name="weightDtype"/>: per group
    /// of 256 elements before a K-quant, 32 otherwise, in f32, d = max|x| / 127,
    /// q = round-to-nearest-even(x * (1 / d)); the value d * q (exact in double).</summary>
    public static double[] RoundQ8(ReadOnlySpan<float> x, LlmkDtype weightDtype)
    {
        int group = weightDtype is LlmkDtype.Q4_K or LlmkDtype.Q6_K ? 256 : 32;
        var result = new double[x.Length];
        for (int b = 0; b < x.Length; b += group)
        {
            float amax = 0;
            for (int i = 0; i < group; i++)
                amax = MathF.Max(amax, MathF.Abs(x[b + i]));
            float d = amax / 127f, id = d != 0 ? 1f / d : 0f;
            for (int i = 0; i < group; i++)
                result[b + i] = (double)d * MathF.Round(x[b + i] * id, MidpointRounding.ToEven);
        }
        return result;
    }

    /// <summary>
    /// The largest error llmk_convert's quantizer may leave at each element of <paramref name="x"/> (whole blocks),
    /// from x alone: Q8_0 rounds to d = max|x| / 127 (half a step, plus the f16 rounding of d at up to 127
    /// steps); Q4_0 to d = max|x| / 8 (a full step at the clamped end); Q4_K to steps of range / 15 per 32, with
    /// the 6-bit scales and mins rounded against d = max step / 63 and dmin = max min / 63 (half of each, times
    /// 15 codes); Q6_K to steps of max|x| / 31 per 16 with int8 scales against d = max step / 127.
    /// </summary>
    public static double[] QuantizeErrorBound(LlmkDtype dtype, ReadOnlySpan<float> x)
    {
        var bound = new double[x.Length];
        int block = (int)Tensor.BlockOf(dtype).Elements;
        const double f16 = 1.0 / 1024; // relative rounding of a scale stored in f16, with room
        for (int b0 = 0; b0 < x.Length; b0 += block)
        {
            var xs = x.Slice(b0, block);
            double amax = 0;
            foreach (var v in xs) amax = Math.Max(amax, Math.Abs(v));
            switch (dtype)
            {
                case LlmkDtype.Q8_0:
                    bound.AsSpan(b0, block).Fill(amax / 127 * (0.5 + 127 * f16));
                    break;
                case LlmkDtype.Q4_0:
                    bound.AsSpan(b0, block).Fill(amax / 8 * (1 + 8 * f16));
                    break;
                case LlmkDtype.Q4_K:
                {
                    double maxStep = 0, maxMin = 0;
                    var range = new double[8];
                    for (int j = 0; j < 8; j++)
                    {
                        double lo = 0, hi = 0;
                        for (int l = 0; l < 32; l++) { lo = Math.Min(lo, xs[32 * j + l]); hi = Math.Max(hi, xs[32 * j + l]); }
                        range[j] = hi - lo;
                        maxStep = Math.Max(maxStep, range[j] / 15);
                        maxMin = Math.Max(maxMin, -lo);
                    }
                    double d = maxStep / 63 * (1 + f16), dmin = maxMin / 63 * (1 + f16);
                    for (int j = 0; j < 8; j++)
                        bound.AsSpan(b0 + 32 * j, 32).Fill((range[j] / 15 + d) / 2 + 15 * d / 2 + dmin / 2 + amax * f16);
                    break;
                }
                case LlmkDtype.Q6_K:
                {
                    var step = new double[16];
                    double maxStep = 0;
                    for (int j = 0; j < 16; j++)
                    {
                        double m = 0;
                        for (int l = 0; l < 16; l++) m = Math.Max(m, Math.Abs(xs[16 * j + l]));
                        step[j] = m / 31;
                        maxStep = Math.Max(maxStep, step[j]);
                    }
                    double d = maxStep / 127 * (1 + f16);
                    for (int j = 0; j < 16; j++)
                        bound.AsSpan(b0 + 16 * j, 16).Fill((step[j] + d) / 2 + 32 * d / 2 + amax * f16);
                    break;
                }
                default:
                    throw new ArgumentException($"{dtype} is not quantized", nameof(dtype));
            }
        }
        return bound;
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
