using System.Globalization;
using System.Text;

namespace LlmKernels.Generator;

// What the writers need from the header, already mapped to C# names and types. Lists keep header order.

internal sealed record HeaderModel(
    string HeaderPath, // repository-relative, '/' separators
    string Target,     // the clang target the sizes and offsets were computed for
    IReadOnlyList<ConstantModel> Constants,
    IReadOnlyList<EnumModel> Enums,
    IReadOnlyList<StructModel> Structs,
    IReadOnlyList<FunctionModel> Functions);

internal sealed record ConstantModel(string CName, string Name, string CsType, string Value, string? Doc);

internal sealed record EnumModel(string CName, string Name, long Size, IReadOnlyList<EnumMemberModel> Members, string? Doc);

internal sealed record EnumMemberModel(string CName, string Name, long Value, string? Doc);

internal sealed record StructModel(string CName, string Name, long Size, IReadOnlyList<FieldModel> Fields, string? Doc);

/// <summary>A struct field; FixedLength is set for a C array, which becomes a C# fixed buffer of CsType.</summary>
internal sealed record FieldModel(string CName, string CsType, int? FixedLength, long Offset, string? Doc);

internal sealed record FunctionModel(string CName, string ReturnType, IReadOnlyList<ParameterModel> Parameters, string? Doc);

/// <summary>
/// A function parameter. Kind and Pointee say what it points to, for the writer that wraps the externs in the
/// public API: a Handle points to an opaque struct (Pointee: its C name, llmk_context), a StructPointer to a struct
/// of the header (Pointee: its C# name, LlmkTensor); IsConst is set when the pointee is const.
/// </summary>
internal sealed record ParameterModel(string CName, string CsType, string? Doc, ParameterKind Kind, string? Pointee,
                                      bool IsConst);

internal enum ParameterKind { Value, Handle, StructPointer, Pointer }

/// <summary>A construct of the header the generator cannot map faithfully; generation stops with its message.</summary>
internal sealed class GeneratorException(string message) : Exception(message);

/// <summary>The naming rules of docs/DESIGN.md, "Generated bindings".</summary>
internal static class Naming
{
    private const string LibraryPrefix = "LLMK_";

    /// <summary>llmk_rope_params -> LlmkRopeParams.</summary>
    public static string TypeName(string cName) => Pascal(cName);

    /// <summary>LLMK_ROPE_SCALING_LLAMA3 in llmk_rope_scaling -> Llama3.</summary>
    public static string EnumMember(string enumCName, string constantCName)
    {
        var prefix = enumCName.ToUpperInvariant() + "_";
        if (!constantCName.StartsWith(prefix, StringComparison.Ordinal) || constantCName.Length == prefix.Length)
            throw new GeneratorException(
                $"enum {enumCName}: constant {constantCName} does not start with the enum's prefix {prefix}, " +
                "so it has no member name under the naming rules (docs/DESIGN.md)");
        var name = Pascal(constantCName[prefix.Length..]);
        if (char.IsDigit(name[0]))
            throw new GeneratorException(
                $"enum {enumCName}: constant {constantCName} gives member name '{name}', which starts with a digit");
        return name;
    }

    /// <summary>LLMK_MAX_RANK -> MaxRank.</summary>
    public static string Constant(string macroName) =>
        Pascal(macroName.StartsWith(LibraryPrefix, StringComparison.Ordinal) ? macroName[LibraryPrefix.Length..] : macroName);

    /// <summary>llmk_rms_norm -> RmsNorm: the public method of a C entry point.</summary>
    public static string Method(string functionCName) =>
        Pascal(functionCName.StartsWith("llmk_", StringComparison.Ordinal) ? functionCName[5..] : functionCName);

    /// <summary>gate_up -> gateUp, out -> @out: a C parameter as a C# parameter.</summary>
    public static string Parameter(string cName)
    {
        var pascal = Pascal(cName);
        return Identifier(char.ToLowerInvariant(pascal[0]) + pascal[1..]);
    }

    /// <summary>A C identifier usable in C#: keywords get the verbatim prefix (params -> @params).</summary>
    public static string Identifier(string cName) => Keywords.Contains(cName) ? "@" + cName : cName;

    /// <summary>snake_case to PascalCase; an underscore after a digit stays (Q8_0 and Q4_K, not Q80 and Q4K).</summary>
    private static string Pascal(string snake)
    {
        var builder = new StringBuilder(snake.Length);
        foreach (var part in snake.Split('_', StringSplitOptions.RemoveEmptyEntries))
        {
            if (builder.Length > 0 && char.IsDigit(builder[^1]))
                builder.Append('_');
            builder.Append(char.ToUpperInvariant(part[0])).Append(part[1..].ToLowerInvariant());
        }
        return builder.ToString();
    }

    private static readonly HashSet<string> Keywords =
    [
        "abstract", "as", "base", "bool", "break", "byte", "case", "catch", "char", "checked", "class", "const",
        "continue", "decimal", "default", "delegate", "do", "double", "else", "enum", "event", "explicit", "extern",
        "false", "finally", "fixed", "float", "for", "foreach", "goto", "if", "implicit", "in", "int", "interface",
        "internal", "is", "lock", "long", "namespace", "new", "null", "object", "operator", "out", "override",
        "params", "private", "protected", "public", "readonly", "ref", "return", "sbyte", "sealed", "short",
        "sizeof", "stackalloc", "static", "string", "struct", "switch", "this", "throw", "true", "try", "typeof",
        "uint", "ulong", "unchecked", "unsafe", "ushort", "using", "virtual", "void", "volatile", "while",
    ];
}

/// <summary>Builds a <see cref="HeaderModel"/> from a header parsed by libclang.</summary>
internal sealed class HeaderParser
{
    /// <summary>
    /// Sizes and offsets are computed for this target, whatever the host, so the output is the same everywhere.
    /// Every 64-bit target .NET runs on (x64/arm64, Linux/Windows/macOS) lays out fixed-width fields the same way.
    /// </summary>
    public const string Target = "x86_64-pc-linux-gnu";

    // Fixed-width typedefs map by name, before their (platform-dependent) underlying type is looked at.
    private static readonly Dictionary<string, string> KnownTypedefs = new()
    {
        ["int8_t"] = "sbyte", ["uint8_t"] = "byte", ["int16_t"] = "short", ["uint16_t"] = "ushort",
        ["int32_t"] = "int", ["uint32_t"] = "uint", ["int64_t"] = "long", ["uint64_t"] = "ulong",
        ["size_t"] = "nuint", ["ptrdiff_t"] = "nint", ["intptr_t"] = "nint", ["uintptr_t"] = "nuint",
    };

    private static readonly Dictionary<TypeKind, string> Builtins = new()
    {
        [TypeKind.SChar] = "sbyte", [TypeKind.UChar] = "byte", [TypeKind.Short] = "short",
        [TypeKind.UShort] = "ushort", [TypeKind.Int] = "int", [TypeKind.UInt] = "uint",
        [TypeKind.LongLong] = "long", [TypeKind.ULongLong] = "ulong", [TypeKind.Float] = "float",
        [TypeKind.Double] = "double",
    };

    // Element types C# allows in a fixed buffer.
    private static readonly HashSet<string> FixedBufferTypes =
        ["sbyte", "byte", "short", "ushort", "int", "uint", "long", "ulong", "float", "double"];

    private readonly CommentIndex _comments;
    private readonly Dictionary<string, string> _enumNames = new();   // C tag -> C# name
    private readonly Dictionary<string, string> _structNames = new(); // C tag -> C# name (complete structs only)

    private HeaderParser(CommentIndex comments) => _comments = comments;

    public static HeaderModel Parse(string headerPath, string displayPath)
    {
        string[] args = ["-xc", "-std=c11", "-ffreestanding", "--target=" + Target, "-I" + Path.GetDirectoryName(headerPath)];
        var (index, unit) = LibClang.Parse(headerPath, args,
            LibClang.DetailedPreprocessingRecord | LibClang.SkipFunctionBodies);
        try
        {
            if (unit == 0)
                throw new GeneratorException("libclang could not parse it (file missing or unreadable?)");
            ThrowOnErrors(unit);
            var root = LibClang.clang_getTranslationUnitCursor(unit);
            var tokens = LibClang.Tokenize(unit, LibClang.clang_getCursorExtent(root));
            return new HeaderParser(new CommentIndex(tokens)).Build(root, tokens, displayPath);
        }
        finally
        {
            if (unit != 0)
                LibClang.clang_disposeTranslationUnit(unit);
            LibClang.clang_disposeIndex(index);
        }
    }

    private static void ThrowOnErrors(nint unit)
    {
        var messages = new List<string>();
        var errors = 0;
        var count = LibClang.clang_getNumDiagnostics(unit);
        for (uint i = 0; i < count; i++)
        {
            var diagnostic = LibClang.clang_getDiagnostic(unit, i);
            var severity = LibClang.clang_getDiagnosticSeverity(diagnostic);
            if (severity >= DiagnosticSeverity.Warning)
                messages.Add("  " + LibClang.Take(LibClang.clang_formatDiagnostic(diagnostic,
                    LibClang.clang_defaultDiagnosticDisplayOptions())));
            if (severity >= DiagnosticSeverity.Error)
                errors++;
            LibClang.clang_disposeDiagnostic(diagnostic);
        }
        if (errors > 0)
            throw new GeneratorException($"does not parse ({errors} error(s)):\n" + string.Join("\n", messages));
        foreach (var message in messages)
            Console.Error.WriteLine("warning from clang:" + message);
    }

    private HeaderModel Build(CXCursor root, List<LibClang.Token> tokens, string displayPath)
    {
        var declarations = LibClang.Children(root).Where(LibClang.IsFromMainFile).ToList();

        // First the names of every enum and complete struct, so any declaration can refer to any of them.
        foreach (var cursor in declarations)
        {
            if (cursor.Kind is not (CursorKind.EnumDecl or CursorKind.StructDecl) ||
                LibClang.clang_isCursorDefinition(cursor) == 0)
                continue;
            var name = TagName(cursor);
            (cursor.Kind == CursorKind.EnumDecl ? _enumNames : _structNames)[name] = Naming.TypeName(name);
        }

        var constants = new List<ConstantModel>();
        var enums = new List<EnumModel>();
        var structs = new List<StructModel>();
        var functions = new List<FunctionModel>();
        var seenFunctions = new HashSet<string>();
        foreach (var cursor in declarations)
        {
            switch (cursor.Kind)
            {
                case CursorKind.MacroDefinition:
                    if (ReadConstant(cursor, tokens) is { } constant)
                        constants.Add(constant);
                    break;
                case CursorKind.EnumDecl when LibClang.clang_isCursorDefinition(cursor) != 0:
                    enums.Add(ReadEnum(cursor));
                    break;
                case CursorKind.StructDecl when LibClang.clang_isCursorDefinition(cursor) != 0:
                    structs.Add(ReadStruct(cursor));
                    break;
                case CursorKind.FunctionDecl when seenFunctions.Add(LibClang.Spelling(cursor)):
                    functions.Add(ReadFunction(cursor));
                    break;
                case CursorKind.UnionDecl:
                    throw new GeneratorException($"union {LibClang.Spelling(cursor)}: unions are not supported");
                case CursorKind.VarDecl:
                    throw new GeneratorException(
                        $"variable {LibClang.Spelling(cursor)}: global variables cannot be bound through P/Invoke");
            }
        }
        return new HeaderModel(displayPath, Target, constants, enums, structs, functions);
    }

    private static string TagName(CXCursor cursor)
    {
        var name = LibClang.Spelling(cursor);
        if (name.Length == 0 || name.Contains(' '))
            throw new GeneratorException(
                $"anonymous {(cursor.Kind == CursorKind.EnumDecl ? "enum" : "struct")} at line " +
                $"{LibClang.Extent(cursor).Start.Line}: give it a tag name (typedef enum llmk_x {{...}} llmk_x;)");
        return name;
    }

    private EnumModel ReadEnum(CXCursor cursor)
    {
        var cName = TagName(cursor);
        var size = LibClang.clang_Type_getSizeOf(LibClang.clang_getCursorType(cursor));
        if (size != 4)
            throw new GeneratorException($"enum {cName}: C size is {size} bytes, expected 4 (bound as a C# int enum)");
        var members = new List<EnumMemberModel>();
        foreach (var child in LibClang.Children(cursor))
        {
            if (child.Kind != CursorKind.EnumConstantDecl)
                continue;
            var constantName = LibClang.Spelling(child);
            var value = LibClang.clang_getEnumConstantDeclValue(child);
            if (value is < int.MinValue or > int.MaxValue)
                throw new GeneratorException($"enum {cName}: {constantName} = {value} does not fit a C# int");
            members.Add(new EnumMemberModel(constantName, Naming.EnumMember(cName, constantName), value,
                MemberDoc(child)));
        }
        return new EnumModel(cName, _enumNames[cName], size, members, _comments.Leading(LibClang.Extent(cursor).Start));
    }

    private StructModel ReadStruct(CXCursor cursor)
    {
        var cName = TagName(cursor);
        var type = LibClang.clang_getCursorType(cursor);
        var fields = new List<FieldModel>();
        foreach (var child in LibClang.Children(cursor))
        {
            if (child.Kind is CursorKind.StructDecl or CursorKind.UnionDecl or CursorKind.EnumDecl)
                throw new GeneratorException($"struct {cName}: nested type declarations are not supported");
            if (child.Kind != CursorKind.FieldDecl)
                continue;
            var name = LibClang.Spelling(child);
            var where = $"struct {cName}, field {name}";
            if (LibClang.clang_Cursor_isBitField(child) != 0)
                throw new GeneratorException($"{where}: bit-fields have no C# equivalent");
            var offsetBits = LibClang.clang_Cursor_getOffsetOfField(child);
            if (offsetBits < 0 || offsetBits % 8 != 0)
                throw new GeneratorException($"{where}: libclang reports offset {offsetBits} bits");

            var fieldType = LibClang.clang_getCursorType(child);
            string csType;
            int? length = null;
            if (fieldType.Kind == TypeKind.ConstantArray)
            {
                csType = MapType(LibClang.clang_getArrayElementType(fieldType), where, allowVoid: false);
                if (!FixedBufferTypes.Contains(csType))
                    throw new GeneratorException(
                        $"{where}: an array of {csType} cannot be a C# fixed buffer (only primitive elements)");
                length = checked((int)LibClang.clang_getArraySize(fieldType));
            }
            else
            {
                csType = MapType(fieldType, where, allowVoid: false);
            }
            var (fieldCsType, doc) = EnumMarker(csType, MemberDoc(child), where);
            fields.Add(new FieldModel(name, fieldCsType, length, offsetBits / 8, doc));
        }
        return new StructModel(cName, _structNames[cName], LibClang.clang_Type_getSizeOf(type), fields,
            _comments.Leading(LibClang.Extent(cursor).Start));
    }

    private FunctionModel ReadFunction(CXCursor cursor)
    {
        var name = LibClang.Spelling(cursor);
        if (LibClang.clang_Cursor_isVariadic(cursor) != 0)
            throw new GeneratorException($"function {name}: variadic functions are not supported");
        if (LibClang.clang_Cursor_isFunctionInlined(cursor) != 0)
            throw new GeneratorException($"function {name}: an inline function exports no symbol to bind");
        var returnType = MapType(LibClang.clang_getCursorResultType(cursor), $"function {name}, return type",
            allowVoid: true);
        var count = LibClang.clang_Cursor_getNumArguments(cursor);
        var parameters = new List<ParameterModel>(count);
        for (uint i = 0; i < count; i++)
        {
            var argument = LibClang.clang_Cursor_getArgument(cursor, i);
            var argumentName = LibClang.Spelling(argument);
            if (argumentName.Length == 0)
                throw new GeneratorException($"function {name}: parameter {i + 1} has no name");
            var where = $"function {name}, parameter {argumentName}";
            var type = LibClang.clang_getCursorType(argument);
            var (csType, doc) = EnumMarker(MapType(type, where, allowVoid: false), MemberDoc(argument), where);
            var (kind, pointee, isConst) = Classify(type);
            parameters.Add(new ParameterModel(argumentName, csType, doc, kind, pointee, isConst));
        }
        return new FunctionModel(name, returnType, parameters, _comments.Leading(LibClang.Extent(cursor).Start));
    }

    /// <summary>
    /// An int32_t field or parameter whose comment is exactly the name of an enum of the header
    /// ("int32_t dtype; /* llmk_dtype */") takes that enum's C# type: the same 4 bytes (ReadEnum requires it), so
    /// the layout and the ABI stay C's, and callers need no casts. The comment, only the marker, is not repeated.
    /// </summary>
    private (string CsType, string? Doc) EnumMarker(string csType, string? doc, string where)
    {
        if (doc is null || !System.Text.RegularExpressions.Regex.IsMatch(doc, "^llmk_[a-z0-9_]+$"))
            return (csType, doc);
        if (!_enumNames.TryGetValue(doc, out var enumName))
            throw new GeneratorException($"{where}: its comment /* {doc} */ names no enum of the header");
        if (csType != "int")
            throw new GeneratorException($"{where}: marked /* {doc} */ but is {csType}; enum values are int32_t");
        return (enumName, null);
    }

    /// <summary>What a parameter points to: an opaque struct (a handle), a struct of the header, or anything else.</summary>
    private (ParameterKind Kind, string? Pointee, bool IsConst) Classify(CXType type)
    {
        var canonical = LibClang.clang_getCanonicalType(type);
        if (canonical.Kind != TypeKind.Pointer)
            return (ParameterKind.Value, null, false);
        var target = LibClang.clang_getPointeeType(canonical);
        bool isConst = LibClang.clang_isConstQualifiedType(target) != 0;
        if (target.Kind == TypeKind.Record)
        {
            var recordName = LibClang.Spelling(LibClang.clang_getTypeDeclaration(target));
            if (IsOpaque(target))
                return (ParameterKind.Handle, recordName, isConst);
            if (_structNames.TryGetValue(recordName, out var csStruct))
                return (ParameterKind.StructPointer, csStruct, isConst);
        }
        return (ParameterKind.Pointer, null, isConst);
    }

    /// <summary>
    /// Fields, enum constants and parameters are documented by a comment after them on their line, else by one
    /// above them when they start their line (a parameter beside the function name must not take its comment).
    /// </summary>
    private string? MemberDoc(CXCursor cursor)
    {
        var (start, end) = LibClang.Extent(cursor);
        return _comments.Trailing(end) ?? (_comments.StartsLine(start) ? _comments.Leading(start) : null);
    }

    /// <summary>The C# spelling of a C type, per docs/DESIGN.md; throws, naming the declaration, when none fits.</summary>
    private string MapType(CXType type, string where, bool allowVoid)
    {
        switch (type.Kind)
        {
            case TypeKind.Elaborated:
                return MapType(LibClang.clang_Type_getNamedType(type), where, allowVoid);
            case TypeKind.Typedef:
                var declaration = LibClang.clang_getTypeDeclaration(type);
                return KnownTypedefs.TryGetValue(LibClang.Spelling(declaration), out var known)
                    ? known
                    : MapType(LibClang.clang_getTypedefDeclUnderlyingType(declaration), where, allowVoid);
            case TypeKind.Void when allowVoid:
                return "void";
            case TypeKind.Enum:
                var enumName = LibClang.Spelling(LibClang.clang_getTypeDeclaration(type));
                if (_enumNames.TryGetValue(enumName, out var csEnum))
                    return csEnum;
                break;
            case TypeKind.Record:
                var recordName = LibClang.Spelling(LibClang.clang_getTypeDeclaration(type));
                if (_structNames.TryGetValue(recordName, out var csStruct))
                    return csStruct;
                if (IsOpaque(type))
                    throw new GeneratorException(
                        $"{where}: opaque struct {recordName} can only be used through a pointer");
                break;
            case TypeKind.Pointer:
                var pointee = LibClang.clang_getPointeeType(type);
                var canonical = LibClang.clang_getCanonicalType(pointee);
                if (canonical.Kind is TypeKind.CharS or TypeKind.CharU)
                    return "byte*"; // C strings and char buffers
                if (canonical.Kind == TypeKind.Record && IsOpaque(canonical))
                    return "nint"; // handles such as llmk_context*
                return MapType(pointee, where, allowVoid: true) + "*";
            default:
                if (Builtins.TryGetValue(type.Kind, out var builtin))
                    return builtin;
                break;
        }
        var hint = type.Kind switch
        {
            TypeKind.Long or TypeKind.ULong => " (C long has no fixed size across platforms; use int32_t or int64_t)",
            TypeKind.FunctionNoProto or TypeKind.FunctionProto => " (function pointers are not supported)",
            _ => "",
        };
        throw new GeneratorException($"{where}: cannot map C type '{LibClang.Spelling(type)}' to C#{hint}");
    }

    private static bool IsOpaque(CXType record) => LibClang.clang_Type_getSizeOf(record) < 0;

    /// <summary>An object-like macro whose body is one integer literal (optionally negated or parenthesized).</summary>
    private ConstantModel? ReadConstant(CXCursor cursor, List<LibClang.Token> tokens)
    {
        if (LibClang.clang_Cursor_isMacroFunctionLike(cursor) != 0)
            return null;
        var (start, end) = LibClang.Extent(cursor);
        var body = tokens.Where(t => t.Start.Offset >= start.Offset && t.End.Offset <= end.Offset &&
                                     t.Kind != TokenKind.Comment)
            .Skip(1) // the macro's name
            .Select(t => t.Text).ToList();
        while (body.Count >= 2 && body[0] == "(" && body[^1] == ")")
            body = body[1..^1];
        var negative = body.Count == 2 && body[0] == "-";
        if (body.Count != (negative ? 2 : 1) || !TryParseInteger(body[^1], out var magnitude))
            return null; // empty (include guards), strings, expressions, attributes: not constants

        var name = LibClang.Spelling(cursor);
        string csType, value;
        if (negative)
        {
            if (magnitude > (ulong)long.MaxValue + 1)
                throw new GeneratorException($"macro {name}: -{magnitude} does not fit in 64 bits");
            var signed = magnitude == (ulong)long.MaxValue + 1 ? long.MinValue : -(long)magnitude;
            csType = signed >= int.MinValue ? "int" : "long";
            value = signed.ToString(CultureInfo.InvariantCulture);
        }
        else
        {
            csType = magnitude <= int.MaxValue ? "int" : magnitude <= long.MaxValue ? "long" : "ulong";
            value = magnitude.ToString(CultureInfo.InvariantCulture);
        }
        return new ConstantModel(name, Naming.Constant(name), csType, value, _comments.Leading(start));
    }

    private static bool TryParseInteger(string literal, out ulong value)
    {
        var digits = literal.TrimEnd('u', 'U', 'l', 'L');
        if (digits.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
            return ulong.TryParse(digits[2..], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
        value = 0;
        if (digits.StartsWith("0b", StringComparison.OrdinalIgnoreCase))
            return digits.Length > 2 && digits[2..].All(c => c is '0' or '1') &&
                   ulong.TryParse(digits[2..], NumberStyles.AllowBinarySpecifier, CultureInfo.InvariantCulture, out value);
        if (digits.Length > 1 && digits[0] == '0')
        {
            // Octal, as C reads a leading zero.
            if (!digits.All(c => c is >= '0' and <= '7'))
                return false;
            foreach (var c in digits)
                value = checked(value * 8 + (ulong)(c - '0'));
            return true;
        }
        return digits.Length > 0 && digits.All(char.IsAsciiDigit) &&
               ulong.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }
}

/// <summary>
/// Finds the C comments that document declarations: a comment block that ends on the line just above a
/// declaration (and starts its own line), or a comment on the same line right after a member ("int32_t rank;
/// /* 1..4 */"). Decorative rules ("/* ----- */") are ignored.
/// </summary>
internal sealed class CommentIndex
{
    private readonly List<LibClang.Token> _tokens;
    private readonly Dictionary<int, LibClang.Token> _leadingByEndLine = new();

    public CommentIndex(List<LibClang.Token> tokens)
    {
        _tokens = tokens;
        var previousLine = 0;
        foreach (var token in tokens)
        {
            var startsLine = token.Start.Line != previousLine;
            previousLine = token.End.Line;
            if (token.Kind == TokenKind.Comment && startsLine)
                _leadingByEndLine[token.End.Line] = token;
        }
    }

    public string? Leading(Position declarationStart) =>
        _leadingByEndLine.TryGetValue(declarationStart.Line - 1, out var comment) ? Clean(comment.Text) : null;

    /// <summary>Whether no token precedes this position on its line.</summary>
    public bool StartsLine(Position position)
    {
        var previous = _tokens.FindLastIndex(t => t.End.Offset <= position.Offset);
        return previous < 0 || _tokens[previous].End.Line < position.Line;
    }

    public string? Trailing(Position declarationEnd)
    {
        var i = _tokens.FindIndex(t => t.Start.Offset >= declarationEnd.Offset);
        // Skip the ',' ';' ')' that close the member on its line.
        while (i >= 0 && i < _tokens.Count && _tokens[i].Kind == TokenKind.Punctuation &&
               _tokens[i].Start.Line == declarationEnd.Line)
            i++;
        return i >= 0 && i < _tokens.Count && _tokens[i].Kind == TokenKind.Comment &&
               _tokens[i].Start.Line == declarationEnd.Line
            ? Clean(_tokens[i].Text)
            : null;
    }

    /// <summary>The comment's text without its delimiters and the leading '*' of continuation lines.</summary>
    private static string? Clean(string raw)
    {
        IEnumerable<string> lines;
        if (raw.StartsWith("//", StringComparison.Ordinal))
        {
            lines = raw.Split('\n').Select(l => l.TrimStart().TrimStart('/'));
        }
        else
        {
            var inner = raw[2..^2].TrimStart('*', '!');
            lines = inner.Split('\n').Select(l =>
            {
                var t = l.Trim();
                return t.StartsWith('*') ? t[1..] : t;
            });
        }
        var cleaned = lines.Select(l => l.Trim()).SkipWhile(l => l.Length == 0).Reverse()
            .SkipWhile(l => l.Length == 0).Reverse().ToList();
        return cleaned.Any(l => l.Any(char.IsLetterOrDigit)) ? string.Join("\n", cleaned) : null;
    }
}
