using System.CommandLine;
using LlmKernels.Cli;

var root = new RootCommand("llmk: fast, verified LLM kernels for .NET");
root.Subcommands.Add(VerifyCommand.Create());
return root.Parse(args).Invoke();
