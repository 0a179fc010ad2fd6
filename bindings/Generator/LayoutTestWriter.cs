namespace LlmKernels.Generator;

/// <summary>
/// Writes tests/LlmKernels.Tests/Generated/LayoutTests.g.cs: for every struct, the managed size and every field
/// offset must equal what libclang computed for the C compiler; every enum must be as wide as its C type.
/// </summary>
internal static class LayoutTestWriter
{
    public static string Write(HeaderModel model)
    {
        var code = new CodeBuilder();
        code.Line(CodeBuilder.Banner(model.HeaderPath).TrimEnd('\n'))
            .Line($"// Expected sizes and offsets are the C layout libclang computed for {model.Target}.")
            .Line()
            .Line("using System.Runtime.CompilerServices;")
            .Line("using System.Runtime.InteropServices;")
            .Line($"using {CSharpWriter.Namespace};")
            .Line("using NUnit.Framework;")
            .Line()
            .Line("namespace LlmKernels.Tests.Generated;")
            .Line()
            .Summary($"The generated structs and enums of {CSharpWriter.Namespace} have the C layout of {model.HeaderPath}.")
            .Line("[TestFixture]")
            .Open("public sealed class LayoutTests");

        code.Line("[OneTimeSetUp]")
            .Open("public void RequireA64BitProcess()")
            .Line("// The expected values are for a 64-bit target: pointers are 8 bytes.")
            .Line("if (!Environment.Is64BitProcess)")
            .Line("    Assert.Ignore(\"layouts were generated for a 64-bit target\");")
            .Close();

        foreach (var s in model.Structs)
        {
            code.Line()
                .Line("[Test]")
                .Open($"public void {s.Name}_HasTheCLayout()")
                .Open("Assert.Multiple(() =>")
                .Line($"Assert.That(Unsafe.SizeOf<{s.Name}>(), Is.EqualTo({s.Size}), \"Unsafe.SizeOf vs sizeof({s.CName})\");")
                .Line($"Assert.That(Marshal.SizeOf<{s.Name}>(), Is.EqualTo({s.Size}), \"Marshal.SizeOf vs sizeof({s.CName})\");");
            foreach (var field in s.Fields)
                code.Line($"Assert.That(Marshal.OffsetOf<{s.Name}>(\"{field.CName}\"), Is.EqualTo((nint){field.Offset}), " +
                          $"\"offsetof({s.CName}, {field.CName})\");");
            code.Close(");").Close();
        }

        if (model.Enums.Count > 0)
        {
            code.Line()
                .Line("[Test]")
                .Open("public void Enums_HaveTheCSize()")
                .Open("Assert.Multiple(() =>");
            foreach (var e in model.Enums)
                code.Line($"Assert.That(Unsafe.SizeOf<{e.Name}>(), Is.EqualTo({e.Size}), \"sizeof(enum {e.CName})\");");
            code.Close(");").Close();
        }

        code.Close();
        return code.ToString();
    }
}
