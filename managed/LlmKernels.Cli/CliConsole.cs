using System.Reflection;
using LlmKernels.Models;
using Spectre.Console;

namespace LlmKernels.Cli;

/// <summary>
/// Where the commands write: <see cref="Out"/> gets the results (generated text, tables), <see cref="Err"/> the
/// progress, timings and errors, so `llmk generate ... > out.txt` keeps only the text. Commands never touch
/// the static AnsiConsole, so tests run them in-process on their own writers.
/// </summary>
internal sealed class CliConsole(IAnsiConsole output, IAnsiConsole error)
{
    public IAnsiConsole Out { get; } = output;
    public IAnsiConsole Err { get; } = error;

    /// <summary>The raw stdout writer, for streamed text that Spectre must not wrap or interpret.</summary>
    public TextWriter OutWriter => Out.Profile.Out.Writer;

    /// <summary>The process's stdout and stderr, with Spectre's detection of colors and interactivity.</summary>
    /// Redirected output gets no colors and a wide fixed width, so logs hold no escape codes and tables are not
    /// folded to 80 columns.
    public static CliConsole Standard() => new(Create(Console.Out, Console.IsOutputRedirected), Create(Console.Error, Console.IsErrorRedirected));

    private static IAnsiConsole Create(TextWriter writer, bool redirected)
    {
        if (!redirected)
            return AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(writer) });
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
        });
        console.Profile.Width = 200;
        return console;
    }

    /// <summary>Plain text on the given writers: no colors, no live displays, a fixed width (tests).</summary>
    public static CliConsole Plain(TextWriter output, TextWriter error, int width = 200)
    {
        IAnsiConsole Create(TextWriter writer)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings
            {
                Out = new AnsiConsoleOutput(writer),
                Ansi = AnsiSupport.No,
                ColorSystem = ColorSystemSupport.NoColors,
                Interactive = InteractionSupport.No,
            });
            console.Profile.Width = width;
            return console;
        }
        return new CliConsole(Create(output), Create(error));
    }

    /// <summary>A dim note on stderr (timings, what was loaded).</summary>
    public void Note(string text) => Line(Err, text, "2");

    /// <summary>The one red line a user error gets: "llmk: error: ...", the message folded onto one line.</summary>
    public void Error(string message) => Line(Err, "llmk: error: " + OneLine(message), "31");

    /// <summary>One line as is, colored by an SGR code where the console takes ANSI: Spectre's markup would wrap
    /// it at the console's width (80 columns when redirected), splitting a message that greps expect whole.</summary>
    private static void Line(IAnsiConsole console, string text, string sgr)
    {
        var writer = console.Profile.Out.Writer;
        writer.WriteLine(console.Profile.Capabilities.Ansi ? $"\u001b[{sgr}m{text}\u001b[0m" : text);
        writer.Flush();
    }

    private static string OneLine(string message) =>
        string.Join(" ", message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}

/// <summary>A mistake in how llmk was called (conflicting options, a folder that does not exist).</summary>
internal sealed class CliException(string message) : Exception(message);

internal static class CommandRunner
{
    /// <summary>
    /// Runs a command's body; a user error (bad model files, a native status, a missing file or library, an
    /// argument out of range) becomes one red line and exit code 1. Anything else is a bug in llmk and keeps
    /// its stack trace (System.CommandLine's handler prints it).
    /// </summary>
    public static int Run(CliConsole io, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (UserError(e) is { } user)
        {
            io.Error(user.Message);
            return 1;
        }
    }

    private static Exception? UserError(Exception e)
    {
        // The native library is resolved lazily, so its load failure can arrive wrapped.
        while (e is TypeInitializationException or TargetInvocationException && e.InnerException is not null)
            e = e.InnerException;
        return e is CliException or ModelFormatException or LlmkException or IOException or UnauthorizedAccessException
                 or DllNotFoundException or ArgumentException
            ? e
            : null;
    }
}
