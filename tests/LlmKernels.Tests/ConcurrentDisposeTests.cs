using System.Diagnostics;
using System.Runtime.InteropServices;

namespace LlmKernels.Tests;

/// <summary>
/// Kernel calls run in a loop while another thread disposes what they use: a tensor's buffer (through a view of
/// it), the context, or the owner of external memory. Every call must either complete with the oracle's result or
/// throw ObjectDisposedException (or LlmkException) cleanly, never read freed memory: the Kernels API holds the
/// context and each tensor's memory for exactly the duration of the call. The weight is larger than the native
/// free quarantine (64 MiB), so a buffer freed during a call is handed back to the allocator at once; under the
/// ASan build of .ci/run any read of it after that is a heap-use-after-free report.
/// </summary>
[TestFixture]
public sealed class ConcurrentDisposeTests
{
    private const int Rows = 2, InFeatures = 4096, OutFeatures = 4200; // the weight: 68.8 MB of f32
    private const int Iterations = 6, MaxCallsPerIteration = 200;

    public enum Victim { Input, Weight, Bias, Output, Context, ExternalWeight }

    private float[] _x = [], _w = [], _bias = [];
    private double[] _expected = [];

    [OneTimeSetUp]
    public void MakeInputs()
    {
        var rng = TestSupport.Rng();
        _x = RandomData.Floats(rng, Rows * InFeatures);
        _w = RandomData.Floats(rng, OutFeatures * InFeatures, 1 / MathF.Sqrt(InFeatures));
        _bias = RandomData.Floats(rng, OutFeatures);
        _expected = LinearOracle.Linear(RandomData.ToDoubles(_x), Rows, InFeatures, RandomData.ToDoubles(_w), OutFeatures,
                                        RandomData.ToDoubles(_bias));
    }

    [Test]
    public void CallsCompleteOrFailCleanlyWhileAnotherThreadDisposes([Values] Victim victim)
    {
        var rng = TestSupport.Rng($"{nameof(CallsCompleteOrFailCleanlyWhileAnotherThreadDisposes)}.{victim}");
        int completed = 0, midCall = 0;
        for (int iteration = 0; iteration < Iterations; iteration++)
        {
            using var call = new LinearCall(this, victim);
            double callSeconds = call.TimeOneCall(_expected);
            // Dispose within about three calls' time from now, so it lands inside one of them nearly always.
            var delay = TimeSpan.FromSeconds(callSeconds * 3 * rng.NextDouble());
            long disposedAt = 0;
            var disposer = new Thread(() =>
            {
                Thread.Sleep(delay);
                Volatile.Write(ref disposedAt, Stopwatch.GetTimestamp());
                call.DisposeVictim();
            });
            disposer.Start();
            Exception? ended = null;
            for (int i = 0; i < MaxCallsPerIteration && ended is null; i++)
            {
                long start = Stopwatch.GetTimestamp(), end = 0;
                try
                {
                    call.Run();
                    end = Stopwatch.GetTimestamp();
                    // The output of a completed call, unless what reading it needs was disposed meanwhile.
                    var errors = Errors.Compare(_expected, call.Output.ToFloatArray());
                    Assert.That(errors.Within(Tolerance.For(LlmkDtype.F32)), Is.True,
                                $"iteration {iteration}, call {i}: a completed call's result differs from the oracle ({errors})");
                    completed++;
                }
                catch (Exception e) when (e is ObjectDisposedException or LlmkException)
                {
                    ended = e;
                    if (end == 0) end = Stopwatch.GetTimestamp();
                }
                long at = Volatile.Read(ref disposedAt);
                if (at > start && at < end)
                    midCall++;
            }
            disposer.Join();
            Assert.That(ended, Is.Not.Null, $"iteration {iteration}: {MaxCallsPerIteration} calls after disposing the {victim} all succeeded");
            // The dispose is seen before the native library is reached: no call runs on freed memory and fails there.
            Assert.That(ended, Is.InstanceOf<ObjectDisposedException>(), $"iteration {iteration}: {ended}");
        }
        TestContext.Out.WriteLine($"{victim}: {completed} calls completed and matched the oracle; {midCall} of {Iterations} " +
                                  "disposals landed during a call");
        Assert.That(midCall, Is.GreaterThan(0), "no disposal landed during a call: the race was not exercised");
    }

    /// <summary>One llmk_linear call's tensors. Input, Weight, Bias and Output are views of llmk_malloc buffers whose
    /// owners the victim disposes; Context and ExternalWeight use memory of a <see cref="HostMemory"/> instead, so no
    /// buffer keeps the native context alive and the weight's owner is a SafeHandle of the test.</summary>
    private sealed class LinearCall : IDisposable
    {
        private readonly Victim _victim;
        private readonly Context _ctx;
        private readonly List<IDisposable> _owned = [];
        private readonly IDisposable _victimObject;
        private readonly Tensor _x, _w, _bias;

        public Tensor Output { get; }

        public LinearCall(ConcurrentDisposeTests data, Victim victim)
        {
            _victim = victim;
            _ctx = Context.CreateCpu(2);
            if (victim is Victim.Context or Victim.ExternalWeight)
            {
                _x = External(data._x, Rows, InFeatures, out _);
                _w = External(data._w, OutFeatures, InFeatures, out var weightMemory);
                _bias = External(data._bias, OutFeatures, out _);
                Output = External(new float[Rows * OutFeatures], Rows, OutFeatures, out _);
                _victimObject = victim == Victim.Context ? _ctx : weightMemory;
            }
            else
            {
                var x = Own(_ctx.FromHost<float>(data._x, LlmkDtype.F32, Rows, InFeatures));
                var w = Own(_ctx.FromHost<float>(data._w, LlmkDtype.F32, OutFeatures, InFeatures));
                var bias = Own(_ctx.FromHost<float>(data._bias, LlmkDtype.F32, OutFeatures));
                var y = Own(_ctx.Allocate(LlmkDtype.F32, Rows, OutFeatures));
                // The call gets views; the victim is the tensor that owns the buffer.
                (_x, _w, _bias, Output) = (x.Slice(0, 0, Rows), w.Reshape(OutFeatures, InFeatures), bias.Slice(0, 0, OutFeatures),
                                           y.Slice(0, 0, Rows));
                _victimObject = victim switch { Victim.Input => x, Victim.Weight => w, Victim.Bias => bias, _ => y };
            }
        }

        public void Run() => Kernels.Linear(_ctx, _x, _w, _bias, Output);

        /// <summary>Runs one call, checks it, and says how long it took.</summary>
        public double TimeOneCall(double[] expected)
        {
            var watch = Stopwatch.StartNew();
            Run();
            double seconds = watch.Elapsed.TotalSeconds;
            var errors = Errors.Compare(expected, Output.ToFloatArray());
            Assert.That(errors.Within(Tolerance.For(LlmkDtype.F32)), Is.True, $"{_victim}: the first call ({errors})");
            return seconds;
        }

        public void DisposeVictim() => _victimObject.Dispose();

        private Tensor Own(Tensor t)
        {
            _owned.Add(t);
            return t;
        }

        private Tensor External(float[] values, long d0, out HostMemory memory) => External(values, d0, -1, out memory);

        private Tensor External(float[] values, long d0, long d1, out HostMemory memory)
        {
            memory = new HostMemory(values);
            _owned.Add(memory);
            return Tensor.FromPointer(_ctx, memory.Pointer, LlmkDtype.F32, d1 < 0 ? [d0] : [d0, d1], keepAlive: memory);
        }

        public void Dispose()
        {
            foreach (var o in _owned) o.Dispose();
            _ctx.Dispose();
        }
    }

    /// <summary>Native memory with a copy of some floats, freed when the handle is released.</summary>
    private sealed unsafe class HostMemory : SafeHandle
    {
        public HostMemory(float[] values) : base(0, ownsHandle: true)
        {
            nuint bytes = (nuint)values.Length * sizeof(float);
            void* p = NativeMemory.AlignedAlloc(bytes, 64);
            values.AsSpan().CopyTo(new Span<float>(p, values.Length));
            SetHandle((nint)p);
        }

        public nint Pointer => handle;

        public override bool IsInvalid => handle == 0;

        protected override bool ReleaseHandle()
        {
            NativeMemory.AlignedFree((void*)handle);
            return true;
        }
    }
}
