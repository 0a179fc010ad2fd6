namespace LlmKernels.Verification;

/// <summary>Disposes every tensor handed to <see cref="Own"/>: for checks and tests that make many short-lived
/// tensors for one kernel call.</summary>
public abstract class TensorOwner : IDisposable
{
    private readonly List<Tensor> _owned = [];

    protected Tensor Own(Tensor t)
    {
        _owned.Add(t);
        return t;
    }

    public void Dispose()
    {
        foreach (var t in _owned)
            t.Dispose();
        _owned.Clear();
    }
}
