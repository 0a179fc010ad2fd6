namespace LlmKernels.Models.Templates;

/// <summary>The syntax tree of a template: statements render text, expressions give values.</summary>
internal abstract record Node;

internal sealed record TextNode(string Text) : Node;
internal sealed record CommentNode : Node;
internal sealed record IfNode(Node Test, List<Node> Body, List<Node> Alternate) : Node;
internal sealed record ForNode(Node Target, Node Iterable, List<Node> Body, List<Node> Else) : Node;   // Iterable may be a SelectNode
internal sealed record SetNode(Node Target, Node? Value, List<Node> Body) : Node;
internal sealed record MacroNode(string Name, List<Node> Parameters, List<Node> Body) : Node;      // Identifier or KeywordArgument
internal sealed record FilterBlockNode(Node Filter, List<Node> Body) : Node;                      // Identifier or Call
internal sealed record BreakNode : Node;
internal sealed record ContinueNode : Node;

internal sealed record IdentifierNode(string Name) : Node;
internal sealed record LiteralNode(Value Value) : Node;
internal sealed record ArrayNode(List<Node> Items, bool IsTuple) : Node;
internal sealed record ObjectNode(List<(Node Key, Node Value)> Entries) : Node;
internal sealed record MemberNode(Node Object, Node Property, bool Computed) : Node;
internal sealed record SliceNode(Node? Start, Node? Stop, Node? Step) : Node;
internal sealed record CallNode(Node Callee, List<Node> Arguments) : Node;
internal sealed record KeywordArgumentNode(string Name, Node Value) : Node;
internal sealed record UnaryNode(string Operator, Node Operand) : Node;
internal sealed record BinaryNode(string Operator, Node Left, Node Right) : Node;
internal sealed record FilterNode(Node Operand, Node Filter) : Node;                               // Identifier or Call
internal sealed record TestNode(Node Operand, bool Negate, string Test) : Node;
internal sealed record SelectNode(Node Value, Node Test) : Node;                                   // `x if c` without else
internal sealed record TernaryNode(Node Condition, Node IfTrue, Node IfFalse) : Node;
