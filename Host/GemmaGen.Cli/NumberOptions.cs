using System.CommandLine.Parsing;
using System.Globalization;

namespace GemmaGen.Cli;

/// <summary>
/// The parsers of every numeric option (their <c>CustomParser</c>). A value that does not parse is reported as
/// <c>--name value: expected ...</c> with the accepted range, where System.CommandLine's own message would name a
/// .NET type; an integer outside its range is refused while parsing, before anything loads.
/// </summary>
internal static class NumberOptions
{
    /// <summary>An integer from <paramref name="min"/> to <paramref name="max"/>; <paramref name="maxIs"/> says what
    /// the maximum is, when it is not the largest integer.</summary>
    public static Func<ArgumentResult, int> Integer(int min, int max = int.MaxValue, string? maxIs = null) =>
        result => ParseInteger(result, min, max, maxIs) ?? default;

    /// <summary>As <see cref="Integer"/>, for an option that has no value unless given.</summary>
    public static Func<ArgumentResult, int?> OptionalInteger(int min, int max = int.MaxValue, string? maxIs = null) =>
        result => ParseInteger(result, min, max, maxIs);

    /// <summary>A number; <paramref name="expected"/> describes the accepted values (the range is checked where the
    /// value is used: the sampling options by the library's <see cref="SamplingOptions.Validate"/>).</summary>
    public static Func<ArgumentResult, float> Number(string expected) => result =>
    {
        string text = Value(result);
        if (float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out float value)) return value;
        result.AddError($"{Name(result)} {Shown(text)}: expected {expected}");
        return default;
    };

    private static int? ParseInteger(ArgumentResult result, int min, int max, string? maxIs)
    {
        string text = Value(result);
        if (int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int value) && value >= min && value <= max)
            return value;
        string range = max == int.MaxValue && min != int.MinValue
            ? $"an integer, {min} or more"
            : $"an integer from {min} to {max}{(maxIs is null ? "" : $" ({maxIs})")}";
        result.AddError($"{Name(result)} {Shown(text)}: expected {range}");
        return null;
    }

    /// <summary>The option's name as the error shows it.</summary>
    private static string Name(ArgumentResult result) => result.Parent is OptionResult option ? option.Option.Name : result.Argument.Name;

    /// <summary>The value as typed (options of these types take exactly one).</summary>
    private static string Value(ArgumentResult result) => result.Tokens.Count == 0 ? "" : result.Tokens[^1].Value;

    private static string Shown(string text) => text.Length == 0 ? "''" : text;
}
