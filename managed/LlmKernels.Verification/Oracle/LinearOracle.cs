namespace LlmKernels.Verification.Oracle;

/// <summary>torch.nn.functional.linear in double: y = x W^T + b, W of shape [out_features, in_features].</summary>
public static class LinearOracle
{
    public static double[] Linear(ReadOnlySpan<double> x, int rows, int inFeatures, ReadOnlySpan<double> weight,
                                  int outFeatures, ReadOnlySpan<double> bias)
    {
        var y = new double[rows * outFeatures];
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * inFeatures, inFeatures);
            for (int o = 0; o < outFeatures; o++)
            {
                var wo = weight.Slice(o * inFeatures, inFeatures);
                double sum = bias.IsEmpty ? 0 : bias[o];
                for (int k = 0; k < inFeatures; k++)
                    sum += xr[k] * wo[k];
                y[r * outFeatures + o] = sum;
            }
        }
        return y;
    }
}
