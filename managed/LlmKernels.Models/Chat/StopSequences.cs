namespace LlmKernels.Models.Chat;

/// <summary>
/// Cuts streamed text at the first of some stop sequences: text is released as soon as it cannot be the start of
/// one, so nothing after a stop sequence (and no part of it) is ever released; <see cref="Tail"/> keeps it.
/// </summary>
internal sealed class StopSequences(IReadOnlyList<string> stops)
{
    private string _pending = "";
    private readonly System.Text.StringBuilder _tail = new();

    public bool Stopped { get; private set; }

    /// <summary>The text from the stop sequence on (empty until one appears).</summary>
    public string Tail => _tail.ToString();

    /// <summary>Adds text; returns what is safe to release now.</summary>
    public string Push(string text)
    {
        if (Stopped)
        {
            _tail.Append(text);
            return "";
        }
        _pending += text;
        int cut = -1;
        foreach (string stop in stops)
        {
            int at = _pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            Stopped = true;
            string ready = _pending[..cut];
            _tail.Append(_pending, cut, _pending.Length - cut);
            _pending = "";
            return ready;
        }
        int keep = 0;   // the longest tail of the text that a stop sequence starts with
        foreach (string stop in stops)
            for (int n = Math.Min(stop.Length - 1, _pending.Length); n > keep; n--)
                if (_pending.AsSpan(_pending.Length - n).SequenceEqual(stop.AsSpan(0, n))) { keep = n; break; }
        string released = _pending[..^keep];
        _pending = _pending[^keep..];
        return released;
    }

    /// <summary>The held-back text, once generation has ended without a stop sequence.</summary>
    public string Flush()
    {
        string rest = Stopped ? "" : _pending;
        _pending = "";
        return rest;
    }
}
