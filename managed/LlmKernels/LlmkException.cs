using LlmKernels.Interop;

namespace LlmKernels;

/// <summary>A failure reported by libllmk: the status code and the library's message.</summary>
public sealed class LlmkException : Exception
{
    public LlmkException(LlmkStatus status, string message) : base(message) => Status = status;

    /// <summary>The native status code.</summary>
    public LlmkStatus Status { get; }
}

/// <summary>Turns native status codes into exceptions.</summary>
internal static unsafe class Native
{
    /// <summary>Throws <see cref="LlmkException"/> carrying llmk_last_error() unless status is Ok.</summary>
    public static void Check(LlmkStatus status)
    {
        if (status != LlmkStatus.Ok)
            throw Failure(status);
    }

    public static LlmkException Failure(LlmkStatus status)
    {
        var message = Utf8(NativeMethods.llmk_last_error());
        if (string.IsNullOrEmpty(message))
            message = Utf8(NativeMethods.llmk_status_string(status));
        return new LlmkException(status, $"{message} ({status})");
    }

    public static string Utf8(byte* text) => text == null ? "" : System.Runtime.InteropServices.Marshal.PtrToStringUTF8((nint)text) ?? "";
}
