using System.CommandLine;
using System.Globalization;

namespace LlmKernels.Cli;

/// <summary>
/// Option values checked where the options are defined, so a bad value is refused at parse time with one line
/// naming the option and its range, before anything is loaded or printed.
/// </summary>
internal static class OptionRules
{
    /// <summary>An optional number (a seed, a tolerance): without a custom parser a value that is not a number
    /// is reported with the CLR type's name ("System.Nullable`1[System.Int32]").</summary>
    public static Option<T?> OptionalNumber<T>(string name, string description) where T : struct, IParsable<T> => new(name)
    {
        Description = description,
        CustomParser = result =>
        {
            string text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
            if (T.TryParse(text, CultureInfo.InvariantCulture, out var value)) return value;
            result.AddError($"{name}: '{text}' is not {(typeof(T) == typeof(int) ? "an integer" : "a number")}");
            return null;
        },
    };

    /// <summary>Refuses values outside <paramref name="valid"/>; <paramref name="range"/> says what is allowed.</summary>
    public static Option<T> Require<T>(this Option<T> option, Func<T, bool> valid, string range)
    {
        option.Validators.Add(result =>
        {
            T value;
            try
            {
                value = result.GetValueOrDefault<T>();
            }
            catch (InvalidOperationException)
            {
                return; // the value did not parse, and its parser has said so
            }
            if (!valid(value))
                result.AddError($"{option.Name} is {Convert.ToString(value, CultureInfo.InvariantCulture)}; expected {range}");
        });
        return option;
    }
}
