using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace LlmKernels.Generator;

// The small part of libclang's stable C API (clang-c/Index.h) the generator needs. The structs mirror the C
// definitions exactly; they are passed and returned by value, as the C API does.

[StructLayout(LayoutKind.Sequential)]
internal struct CXString
{
    public nint Data;
    public uint PrivateFlags;
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CXCursor
{
    public CursorKind Kind;
    public int XData;
    public fixed ulong Data[3];
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CXType
{
    public TypeKind Kind;
    public fixed ulong Data[2];
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CXSourceLocation
{
    public fixed ulong PtrData[2];
    public uint IntData;
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CXSourceRange
{
    public fixed ulong PtrData[2];
    public uint BeginIntData;
    public uint EndIntData;
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CXToken
{
    public fixed uint IntData[4];
    public nint PtrData;
}

internal enum CursorKind
{
    StructDecl = 2,
    UnionDecl = 3,
    EnumDecl = 5,
    FieldDecl = 6,
    EnumConstantDecl = 7,
    FunctionDecl = 8,
    VarDecl = 9,
    MacroDefinition = 501,
}

internal enum TypeKind
{
    Invalid = 0,
    Void = 2,
    Bool = 3,
    CharU = 4,
    UChar = 5,
    UShort = 8,
    UInt = 9,
    ULong = 10,
    ULongLong = 11,
    CharS = 13,
    SChar = 14,
    Short = 16,
    Int = 17,
    Long = 18,
    LongLong = 19,
    Float = 21,
    Double = 22,
    Pointer = 101,
    Record = 105,
    FunctionNoProto = 110,
    FunctionProto = 111,
    Enum = 106,
    Typedef = 107,
    ConstantArray = 112,
    Elaborated = 119,
}

internal enum TokenKind
{
    Punctuation = 0,
    Keyword = 1,
    Identifier = 2,
    Literal = 3,
    Comment = 4,
}

internal enum DiagnosticSeverity
{
    Ignored = 0,
    Note = 1,
    Warning = 2,
    Error = 3,
    Fatal = 4,
}

/// <summary>A file position: 1-based line and column, 0-based byte offset.</summary>
internal readonly record struct Position(int Line, int Column, int Offset);

internal static unsafe class LibClang
{
    private const string Lib = "libclang";

    // Flags of clang_parseTranslationUnit.
    public const uint DetailedPreprocessingRecord = 0x01;
    public const uint SkipFunctionBodies = 0x40;

    private const int ChildVisitContinue = 1;

    /// <summary>Names and paths probed, in order, after the LLMK_LIBCLANG environment variable.</summary>
    public static readonly string[] ProbeNames =
        ["libclang-14.so.1", "libclang.so.1", "libclang.so", "libclang.dylib", "libclang.dll"];

    private static nint _handle;

    /// <summary>
    /// Loads libclang and routes this assembly's "libclang" imports to it. Returns null on success, otherwise a
    /// message listing every candidate tried and why each failed.
    /// </summary>
    public static string? TryLoad()
    {
        var candidates = new List<string>();
        var fromEnv = Environment.GetEnvironmentVariable("LLMK_LIBCLANG");
        if (!string.IsNullOrWhiteSpace(fromEnv))
            candidates.Add(fromEnv);
        candidates.AddRange(ProbeNames);

        var failures = new List<string>();
        foreach (var candidate in candidates)
        {
            try
            {
                // NativeLibrary.Load (not TryLoad) so the loader's own reason (dlerror text) can be reported.
                _handle = NativeLibrary.Load(candidate);
                LoadedFrom = candidate;
                NativeLibrary.SetDllImportResolver(Assembly.GetExecutingAssembly(),
                    (name, _, _) => name == Lib ? _handle : 0);
                return null;
            }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
            {
                failures.Add($"  {candidate}: {e.Message}");
                if (candidate == fromEnv) // asked for explicitly: say so even if a fallback loads
                    Console.Error.WriteLine($"generator: warning: LLMK_LIBCLANG={fromEnv} cannot be loaded ({e.Message.Trim()}); probing the default names");
            }
        }
        return "cannot load libclang (set LLMK_LIBCLANG to its path, or install libclang1-14). Tried:\n"
               + string.Join("\n", failures);
    }

    public static string LoadedFrom { get; private set; } = "";

    // ---- imports ----------------------------------------------------------------------------------------

    [DllImport(Lib)] public static extern nint clang_createIndex(int excludeDeclarationsFromPch, int displayDiagnostics);
    [DllImport(Lib)] public static extern void clang_disposeIndex(nint index);

    [DllImport(Lib)]
    public static extern nint clang_parseTranslationUnit(nint index, byte* sourceFilename, byte** commandLineArgs,
        int numCommandLineArgs, void* unsavedFiles, uint numUnsavedFiles, uint options);

    [DllImport(Lib)] public static extern void clang_disposeTranslationUnit(nint unit);
    [DllImport(Lib)] public static extern uint clang_getNumDiagnostics(nint unit);
    [DllImport(Lib)] public static extern nint clang_getDiagnostic(nint unit, uint index);
    [DllImport(Lib)] public static extern DiagnosticSeverity clang_getDiagnosticSeverity(nint diagnostic);
    [DllImport(Lib)] public static extern CXString clang_formatDiagnostic(nint diagnostic, uint options);
    [DllImport(Lib)] public static extern uint clang_defaultDiagnosticDisplayOptions();
    [DllImport(Lib)] public static extern void clang_disposeDiagnostic(nint diagnostic);

    [DllImport(Lib)] public static extern CXCursor clang_getTranslationUnitCursor(nint unit);

    [DllImport(Lib)]
    private static extern uint clang_visitChildren(CXCursor parent,
        delegate* unmanaged[Cdecl]<CXCursor, CXCursor, nint, int> visitor, nint clientData);

    [DllImport(Lib)] public static extern CXString clang_getCursorSpelling(CXCursor cursor);
    [DllImport(Lib)] public static extern CXType clang_getCursorType(CXCursor cursor);
    [DllImport(Lib)] public static extern CXSourceRange clang_getCursorExtent(CXCursor cursor);
    [DllImport(Lib)] public static extern CXSourceLocation clang_getCursorLocation(CXCursor cursor);
    [DllImport(Lib)] public static extern int clang_Location_isFromMainFile(CXSourceLocation location);
    [DllImport(Lib)] public static extern uint clang_isCursorDefinition(CXCursor cursor);
    [DllImport(Lib)] public static extern uint clang_Cursor_isBitField(CXCursor cursor);
    [DllImport(Lib)] public static extern uint clang_Cursor_isMacroFunctionLike(CXCursor cursor);
    [DllImport(Lib)] public static extern uint clang_Cursor_isFunctionInlined(CXCursor cursor);
    [DllImport(Lib)] public static extern uint clang_Cursor_isVariadic(CXCursor cursor);
    [DllImport(Lib)] public static extern long clang_getEnumConstantDeclValue(CXCursor cursor);
    [DllImport(Lib)] public static extern CXType clang_getTypedefDeclUnderlyingType(CXCursor cursor);
    [DllImport(Lib)] public static extern long clang_Cursor_getOffsetOfField(CXCursor cursor);
    [DllImport(Lib)] public static extern int clang_Cursor_getNumArguments(CXCursor cursor);
    [DllImport(Lib)] public static extern CXCursor clang_Cursor_getArgument(CXCursor cursor, uint index);
    [DllImport(Lib)] public static extern CXType clang_getCursorResultType(CXCursor cursor);

    [DllImport(Lib)] public static extern CXString clang_getTypeSpelling(CXType type);
    [DllImport(Lib)] public static extern CXType clang_getCanonicalType(CXType type);
    [DllImport(Lib)] public static extern CXType clang_getPointeeType(CXType type);
    [DllImport(Lib)] public static extern uint clang_isConstQualifiedType(CXType type);
    [DllImport(Lib)] public static extern CXType clang_Type_getNamedType(CXType type);
    [DllImport(Lib)] public static extern CXCursor clang_getTypeDeclaration(CXType type);
    [DllImport(Lib)] public static extern long clang_Type_getSizeOf(CXType type);
    [DllImport(Lib)] public static extern long clang_getArraySize(CXType type);
    [DllImport(Lib)] public static extern CXType clang_getArrayElementType(CXType type);

    [DllImport(Lib)] public static extern CXSourceLocation clang_getRangeStart(CXSourceRange range);
    [DllImport(Lib)] public static extern CXSourceLocation clang_getRangeEnd(CXSourceRange range);

    [DllImport(Lib)]
    private static extern void clang_getFileLocation(CXSourceLocation location, nint* file, uint* line, uint* column,
        uint* offset);

    [DllImport(Lib)]
    private static extern void clang_tokenize(nint unit, CXSourceRange range, CXToken** tokens, uint* numTokens);

    [DllImport(Lib)] private static extern void clang_disposeTokens(nint unit, CXToken* tokens, uint numTokens);
    [DllImport(Lib)] private static extern TokenKind clang_getTokenKind(CXToken token);
    [DllImport(Lib)] private static extern CXString clang_getTokenSpelling(nint unit, CXToken token);
    [DllImport(Lib)] private static extern CXSourceRange clang_getTokenExtent(nint unit, CXToken token);

    [DllImport(Lib)] private static extern byte* clang_getCString(CXString text);
    [DllImport(Lib)] private static extern void clang_disposeString(CXString text);

    // ---- helpers ----------------------------------------------------------------------------------------

    /// <summary>Copies and frees a CXString.</summary>
    public static string Take(CXString text)
    {
        var result = Marshal.PtrToStringUTF8((nint)clang_getCString(text)) ?? "";
        clang_disposeString(text);
        return result;
    }

    public static string Spelling(CXCursor cursor) => Take(clang_getCursorSpelling(cursor));
    public static string Spelling(CXType type) => Take(clang_getTypeSpelling(type));

    public static Position ToPosition(CXSourceLocation location)
    {
        uint line, column, offset;
        clang_getFileLocation(location, null, &line, &column, &offset);
        return new Position((int)line, (int)column, (int)offset);
    }

    public static (Position Start, Position End) Extent(CXCursor cursor)
    {
        var range = clang_getCursorExtent(cursor);
        return (ToPosition(clang_getRangeStart(range)), ToPosition(clang_getRangeEnd(range)));
    }

    public static bool IsFromMainFile(CXCursor cursor) =>
        clang_Location_isFromMainFile(clang_getCursorLocation(cursor)) != 0;

    /// <summary>The direct children of a cursor, in source order.</summary>
    public static List<CXCursor> Children(CXCursor parent)
    {
        var children = new List<CXCursor>();
        var handle = GCHandle.Alloc(children);
        try
        {
            clang_visitChildren(parent, &CollectChild, GCHandle.ToIntPtr(handle));
        }
        finally
        {
            handle.Free();
        }
        return children;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int CollectChild(CXCursor cursor, CXCursor parent, nint clientData)
    {
        ((List<CXCursor>)GCHandle.FromIntPtr(clientData).Target!).Add(cursor);
        return ChildVisitContinue;
    }

    public sealed record Token(TokenKind Kind, string Text, Position Start, Position End);

    /// <summary>Every token of a range, comments included (libclang keeps them when tokenizing).</summary>
    public static List<Token> Tokenize(nint unit, CXSourceRange range)
    {
        CXToken* tokens;
        uint count;
        clang_tokenize(unit, range, &tokens, &count);
        var result = new List<Token>((int)count);
        try
        {
            for (var i = 0; i < count; i++)
            {
                var extent = clang_getTokenExtent(unit, tokens[i]);
                result.Add(new Token(clang_getTokenKind(tokens[i]), Take(clang_getTokenSpelling(unit, tokens[i])),
                    ToPosition(clang_getRangeStart(extent)), ToPosition(clang_getRangeEnd(extent))));
            }
        }
        finally
        {
            if (tokens != null)
                clang_disposeTokens(unit, tokens, count);
        }
        return result;
    }

    /// <summary>Parses a C file; the caller disposes the index and the unit.</summary>
    public static (nint Index, nint Unit) Parse(string path, IReadOnlyList<string> args, uint options)
    {
        var index = clang_createIndex(0, 0);
        var strings = new List<nint>();
        try
        {
            var pathUtf8 = Marshal.StringToCoTaskMemUTF8(path);
            strings.Add(pathUtf8);
            var argv = new byte*[args.Count];
            for (var i = 0; i < args.Count; i++)
            {
                var arg = Marshal.StringToCoTaskMemUTF8(args[i]);
                strings.Add(arg);
                argv[i] = (byte*)arg;
            }
            fixed (byte** argvPointer = argv)
            {
                var unit = clang_parseTranslationUnit(index, (byte*)pathUtf8, argvPointer, args.Count, null, 0, options);
                return (index, unit);
            }
        }
        finally
        {
            foreach (var s in strings)
                Marshal.FreeCoTaskMem(s);
        }
    }
}
