using LlmKernels.Generator;

// Reads native/include/llmk.h through libclang and writes the C# bindings, the public Kernels API over them and the
// bindings' layout tests.
//   dotnet run --project bindings/Generator                 regenerate (files are rewritten only when they change)
//   dotnet run --project bindings/Generator -- --check      exit 1 if the checked-in files differ from the header
// Exit codes: 0 ok, 1 drift (--check), 2 usage error, 3 generation failed (libclang, parse errors, unmappable C).

const string HeaderPath = "native/include/llmk.h";
const string BindingsPath = "bindings/generated/NativeMethods.g.cs";
const string KernelsPath = "managed/LlmKernels/Kernels.g.cs";
const string LayoutTestsPath = "tests/LlmKernels.Tests/Generated/LayoutTests.g.cs";

var check = false;
string? root = null;
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--check":
            check = true;
            break;
        case "--root" when i + 1 < args.Length:
            root = Path.GetFullPath(args[++i]);
            break;
        case "-h" or "--help":
            Console.WriteLine("usage: dotnet run --project bindings/Generator [-- [--check] [--root DIR]]");
            Console.WriteLine($"  Generates {BindingsPath}, {KernelsPath} and {LayoutTestsPath} from {HeaderPath}.");
            Console.WriteLine("  --check     regenerate in memory; exit 1 if a checked-in file differs");
            Console.WriteLine("  --root DIR  the repository root (default: the nearest parent holding Interop.sln or the header)");
            Console.WriteLine("  LLMK_LIBCLANG=path  load this libclang instead of probing " + string.Join(", ", LibClang.ProbeNames));
            return 0;
        default:
            Console.Error.WriteLine($"generator: unknown argument '{args[i]}' (try --help)");
            return 2;
    }
}

root ??= FindRoot(Directory.GetCurrentDirectory());
if (root is null || !File.Exists(Path.Combine(root, HeaderPath)))
{
    Console.Error.WriteLine($"generator: cannot find {HeaderPath} " +
                            (root is null ? $"in {Directory.GetCurrentDirectory()} or any parent" : $"under {root}") +
                            "; run from the repository or pass --root DIR");
    return 2;
}

if (LibClang.TryLoad() is { } loadError)
{
    Console.Error.WriteLine("generator: " + loadError);
    return 3;
}

HeaderModel model;
(string Path, string Text)[] outputs;
try
{
    model = HeaderParser.Parse(Path.Combine(root, HeaderPath), HeaderPath);
    outputs =
    [
        (BindingsPath, CSharpWriter.Write(model)),
        (KernelsPath, KernelsWriter.Write(model)),
        (LayoutTestsPath, LayoutTestWriter.Write(model)),
    ];
}
catch (GeneratorException e)
{
    Console.Error.WriteLine($"generator: {HeaderPath}: {e.Message}");
    Console.Error.WriteLine("generator: nothing was written; fix the header or teach bindings/Generator the construct.");
    return 3;
}

if (check)
{
    var stale = 0;
    foreach (var (path, text) in outputs)
    {
        if (Difference(Path.Combine(root, path), text) is not { } difference)
            continue;
        Console.Error.WriteLine($"generator --check: {path} is out of date with {HeaderPath}: {difference}");
        stale++;
    }
    if (stale > 0)
    {
        Console.Error.WriteLine("generator --check: run `dotnet run --project bindings/Generator` and commit the result.");
        return 1;
    }
    Console.WriteLine($"generator --check: {string.Join(", ", outputs.Select(o => o.Path))} match {HeaderPath} " +
                      $"({model.Functions.Count} functions, {model.Structs.Count} structs, {model.Enums.Count} enums, " +
                      $"{model.Constants.Count} constants; libclang: {LibClang.LoadedFrom}).");
    return 0;
}

foreach (var (path, text) in outputs)
{
    var full = Path.Combine(root, path);
    if (Difference(full, text) is null)
    {
        Console.WriteLine($"generator: {path} is up to date");
        continue;
    }
    Directory.CreateDirectory(Path.GetDirectoryName(full)!);
    File.WriteAllText(full, text); // UTF-8 without BOM, "\n" line endings as generated
    Console.WriteLine($"generator: wrote {path}");
}
return 0;

// The nearest directory, from start upwards, that holds Interop.sln or the header.
static string? FindRoot(string start)
{
    for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
    {
        if (File.Exists(Path.Combine(dir.FullName, "Interop.sln")) || File.Exists(Path.Combine(dir.FullName, HeaderPath)))
            return dir.FullName;
    }
    return null;
}

// Null when the file on disk equals the generated text (CRLF checkouts count as equal); else where they differ.
static string? Difference(string path, string expected)
{
    if (!File.Exists(path))
        return "the file does not exist";
    var actual = File.ReadAllText(path).Replace("\r\n", "\n");
    if (actual == expected)
        return null;
    var actualLines = actual.Split('\n');
    var expectedLines = expected.Split('\n');
    for (var line = 0; ; line++)
    {
        var a = line < actualLines.Length ? actualLines[line] : "<end of file>";
        var e = line < expectedLines.Length ? expectedLines[line] : "<end of file>";
        if (a != e)
            return $"first difference at line {line + 1}\n  checked in: {a}\n  generated:  {e}";
    }
}
