namespace LlmKernels.Generator;

/// <summary>
/// Writes managed/LlmKernels/Kernels.g.cs, the public kernel API: one method per kernel of the header (a function
/// that returns llmk_status, takes an llmk_context* first and at least one llmk_tensor*), parameters in C order.
/// A context becomes a Context, an llmk_tensor* a Tensor (Tensor? when its comment says "or NULL"; trailing ones
/// default to null), a const pointer to another struct that struct by value, and every other parameter keeps its
/// extern type. The context and the memory of every tensor are held (SafeHandle.DangerousAddRef) from before the
/// call until after it returns, so a Dispose on another thread cannot free them during the call; the status
/// becomes an LlmkException with the native message. Hand-written additions go in Kernels.Manual.cs.
/// </summary>
internal static class KernelsWriter
{
    public const string ContextStruct = "llmk_context";
    public const string TensorStruct = "LlmkTensor";

    private enum Role { Context, Tensor, OptionalTensor, Struct, Value }

    private sealed record Argument(string Name, string Type, Role Role, string? Doc)
    {
        /// <summary>The name without a verbatim '@', for the locals derived from it (@out -> outHeld).</summary>
        public string Stem => Name.TrimStart('@');
    }

    /// <summary>Whether a function is a kernel, wrapped in the public API.</summary>
    public static bool IsKernel(FunctionModel function) =>
        function.ReturnType == "LlmkStatus" && function.Parameters.Count > 0 &&
        function.Parameters[0] is { Kind: ParameterKind.Handle, Pointee: ContextStruct, IsConst: false } &&
        function.Parameters.Any(p => p is { Kind: ParameterKind.StructPointer, Pointee: TensorStruct });

    public static string Write(HeaderModel model)
    {
        var code = new CodeBuilder();
        code.Line(CodeBuilder.Banner(model.HeaderPath).TrimEnd('\n'))
            .Line()
            .Line("#nullable enable") // generated code is outside the project's nullable context otherwise
            .Line()
            .Line($"using {CSharpWriter.Namespace};")
            .Line()
            .Line("namespace LlmKernels;")
            .Line()
            .Line("/// <summary>")
            .Line($"/// The kernels of {model.HeaderPath}, one method per C entry point, parameters in C order. Every method holds")
            .Line("/// the context and the memory of every tensor for the duration of the native call, throws")
            .Line("/// <see cref=\"ObjectDisposedException\"/> when one was disposed before the call, and <see cref=\"LlmkException\"/>")
            .Line("/// with the native status and message when the call fails.")
            .Line("/// </summary>")
            .Open("public static unsafe partial class Kernels");
        var first = true;
        foreach (var function in model.Functions.Where(IsKernel))
        {
            if (!first)
                code.Line();
            first = false;
            WriteMethod(code, function);
        }
        code.Close();
        return code.ToString();
    }

    private static void WriteMethod(CodeBuilder code, FunctionModel function)
    {
        var arguments = function.Parameters.Select((p, i) => Map(function, p, i)).ToList();
        // Optional tensors at the end may be left out.
        var defaults = arguments.Count - arguments.AsEnumerable().Reverse().TakeWhile(a => a.Role == Role.OptionalTensor).Count();

        code.Summary(function.Doc);
        foreach (var a in arguments)
            code.Param(a.Stem, a.Doc);
        var signature = string.Join(", ", arguments.Select((a, i) => $"{a.Type} {a.Name}" + (i >= defaults ? " = null" : "")));
        code.Open($"public static void {Naming.Method(function.CName)}({signature})");

        var held = arguments.Where(a => a.Role is Role.Context or Role.Tensor or Role.OptionalTensor).ToList();
        foreach (var a in held.Where(a => a.Role != Role.OptionalTensor))
            code.Line($"ArgumentNullException.ThrowIfNull({a.Name});");
        code.Line($"bool {string.Join(", ", held.Select(a => $"{a.Stem}Held = false"))};");
        code.Open("try");
        foreach (var a in held)
        {
            code.Line(a.Role switch
            {
                Role.Context => $"nint {a.Stem}Handle = {a.Name}.Acquire(ref {a.Stem}Held);",
                Role.Tensor => $"{TensorStruct} {a.Stem}View = {a.Name}.Acquire(ref {a.Stem}Held);",
                _ => $"{TensorStruct} {a.Stem}View = {a.Name} is null ? default : {a.Name}.Acquire(ref {a.Stem}Held);",
            });
        }
        var passed = string.Join(", ", arguments.Select(a => a.Role switch
        {
            Role.Context => $"{a.Stem}Handle",
            Role.Tensor => $"&{a.Stem}View",
            Role.OptionalTensor => $"{a.Name} is null ? null : &{a.Stem}View",
            Role.Struct => $"&{a.Name}",
            _ => a.Name,
        }));
        code.Line($"Native.Check(NativeMethods.{function.CName}({passed}));");
        code.Close();
        code.Open("finally");
        foreach (var a in Enumerable.Reverse(held))
            code.Line($"{a.Name}{(a.Role == Role.OptionalTensor ? "?" : "")}.Release({a.Stem}Held);");
        code.Close();
        code.Close();
    }

    private static Argument Map(FunctionModel function, ParameterModel p, int index)
    {
        var name = Naming.Parameter(p.CName);
        switch (p.Kind)
        {
            case ParameterKind.Handle when index == 0:
                return new(name, "Context", Role.Context, p.Doc ?? "The context the kernel runs on; every tensor must be on its device.");
            case ParameterKind.StructPointer when p.Pointee == TensorStruct:
                bool optional = p.Doc?.Contains("or NULL", StringComparison.Ordinal) == true;
                return new(name, optional ? "Tensor?" : "Tensor", optional ? Role.OptionalTensor : Role.Tensor, p.Doc);
            case ParameterKind.StructPointer when p.IsConst:
                return new(name, p.Pointee!, Role.Struct, p.Doc);
            case ParameterKind.Value:
                return new(name, p.CsType, Role.Value, p.Doc);
        }
        throw new GeneratorException(
            $"function {function.CName}, parameter {p.CName}: a kernel (context first, tensors) may take tensors, const " +
            $"structs and values; {p.CsType} has no mapping in the public Kernels API (teach bindings/Generator/KernelsWriter.cs)");
    }
}
