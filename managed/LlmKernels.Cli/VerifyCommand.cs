using System.CommandLine;
using LlmKernels.Interop;
using LlmKernels.Models;
using LlmKernels.Verification;
using Spectre.Console;

namespace LlmKernels.Cli;

/// <summary>
/// `llmk verify`: every kernel of every available backend against the double-precision oracles, on fresh random
/// inputs (the CPU reference and each fast flavour the CPU runs, CUDA when usable), as a table of errors with
/// pass/fail; then whole models: one prompt through the CPU reference and through the CPU's fast kernels (and
/// CUDA when usable), compared layer by layer.
/// Exit code 1 when anything fails.
/// </summary>
internal static class VerifyCommand
{
    private const string DefaultPrompt = "The quick brown fox jumps over the lazy dog";

    public static Command Create(CliConsole io)
    {
        var seedOption = OptionRules.OptionalNumber<int>("--seed", "Seed of the random inputs and tiny-model weights (default: fresh, printed)");
        var kernelOption = new Option<string?>("--kernel") { Description = "Only kernels whose name contains this text" };
        // A filter that matches nothing would run zero checks and report success.
        kernelOption.Validators.Add(r =>
        {
            string? filter = r.GetValueOrDefault<string?>();
            if (filter is not null && !Checks.All().Any(c => KernelMatches(c, filter)))
                r.AddError($"--kernel {filter} matches no kernel; kernels: {string.Join(", ", Checks.All().Select(c => c.Kernel).Distinct())}");
        });
        var backendOption = new Option<string>("--backend")
        {
            Description = "all, cpu (the reference and the fast kernels) or cuda",
            DefaultValueFactory = _ => "all",
        };
        backendOption.AcceptOnlyFromAmong("all", "cpu", "cuda");
        var kernelsOnly = new Option<bool>("--kernels-only") { Description = "Only the kernel checks" };
        var modelOnly = new Option<bool>("--model-only") { Description = "Only the model comparison" };
        var models = new ModelOptions();
        var promptOption = new Option<string>("--prompt") { Description = "Prompt of the model comparison", DefaultValueFactory = _ => DefaultPrompt };
        var toleranceOption = OptionRules.OptionalNumber<double>("--tolerance",
            "Bound on each layer's relative L2 error (default: 1e-4 between f32 runs, 5e-2 against half precision)")
            .Require(t => t is null || t > 0, "a bound > 0");

        var command = new Command("verify", "Check every kernel of every available backend against the reference, then whole models across backends");
        foreach (var option in new Option[] { seedOption, kernelOption, backendOption, kernelsOnly, modelOnly, promptOption, toleranceOption })
            command.Options.Add(option);
        models.AddTo(command, backend: false);
        command.SetAction(parse => CommandRunner.Run(io, () =>
        {
            if (parse.GetValue(kernelsOnly) && parse.GetValue(modelOnly))
                throw new CliException("--kernels-only and --model-only exclude each other");
            int seed = parse.GetValue(seedOption) ?? Random.Shared.Next();
            string backend = parse.GetValue(backendOption)!;
            var library = NativeLibraryLoader.Loaded;
            io.Out.MarkupLineInterpolated($"[bold]llmk verify[/]  seed [yellow]{seed}[/]  library {library.Path} ({library.Version})");
            int failed = 0;
            if (!parse.GetValue(modelOnly))
                failed += RunKernels(io, seed, parse.GetValue(kernelOption), backend);
            if (!parse.GetValue(kernelsOnly))
            {
                var choice = models.Choice(parse, defaultToPreset: false);
                var chosen = choice is null ? TinyModels.Presets.Select(p => new ModelChoice(null, p)).ToList() : [choice];
                failed += RunModels(io, chosen, seed, backend, parse.GetValue(promptOption)!, parse.GetValue(toleranceOption));
            }
            io.Out.MarkupLine($"{(failed == 0 ? "[green]all passed[/]" : $"[red]{failed} failed[/]")}  (seed {seed}; replay with --seed {seed})");
            return failed == 0 ? 0 : 1;
        }));
        return command;
    }

    private static bool KernelMatches(KernelCheck check, string filter) => check.Kernel.Contains(filter, StringComparison.OrdinalIgnoreCase);

    /// <summary>The kernel table; returns the number of failed checks.</summary>
    private static int RunKernels(CliConsole io, int seed, string? kernelFilter, string backend)
    {
        var contexts = new List<Context>();
        try
        {
            if (backend is "all" or "cpu")
            {
                // The reference and every fast flavour this CPU runs: each answers to the same oracles.
                contexts.Add(Context.CreateCpu(0, LlmkCpuKernels.Reference));
                foreach (var kernels in new[] { LlmkCpuKernels.Portable, LlmkCpuKernels.Avx2, LlmkCpuKernels.Avx512 })
                {
                    if (Context.CpuKernelsAvailable(kernels, out var why))
                        contexts.Add(Context.CreateCpu(0, kernels));
                    else
                        io.Out.MarkupLineInterpolated($"[grey]CPU {Context.CpuKernelsName(kernels)} kernels skipped: {why}[/]");
                }
            }
            if (backend is "all" or "cuda")
            {
                var cuda = Context.TryCreateCuda(out var reason);
                if (cuda is not null)
                    contexts.Add(cuda);
                else if (backend == "cuda")
                    throw new CliException($"--backend cuda: no usable CUDA device: {reason}");
                else
                    io.Out.MarkupLineInterpolated($"[grey]CUDA backend skipped: {reason}[/]");
            }

            var checks = Checks.All().Where(c => kernelFilter is null || KernelMatches(c, kernelFilter)).ToList();
            var table = new Table().Border(TableBorder.Rounded)
                .AddColumns("backend", "kernel", "case", "dtype", "max abs", "rel L2", "bound", "result");
            int passed = 0, failed = 0;
            foreach (var ctx in contexts)
            {
                foreach (var check in checks)
                {
                    CheckResult result;
                    try
                    {
                        result = check.Run(ctx, seed);
                    }
                    catch (LlmkException e)
                    {
                        failed++;
                        table.AddRow(ctx.ToString(), check.Kernel, Markup.Escape(check.Case), check.DType.ToString(), "", "", "", $"[red]ERROR {Markup.Escape(e.Message)}[/]");
                        continue;
                    }
                    if (result.Passed) passed++; else failed++;
                    table.AddRow(ctx.ToString(), result.Kernel, Markup.Escape(result.Case), result.DType.ToString(),
                        Format.Error(result.Errors.MaxAbs), Format.Error(result.Errors.RelL2), Format.Error(result.Tolerance),
                        result.Passed ? "[green]pass[/]" : $"[red]FAIL{(result.Errors.NonFinite > 0 ? $" ({result.Errors.NonFinite} non-finite)" : "")}[/]");
                }
            }
            io.Out.Write(table);
            io.Out.MarkupLineInterpolated($"kernels: {passed} passed, {failed} failed");
            return failed;
        }
        finally
        {
            foreach (var ctx in contexts)
                ctx.Dispose();
        }
    }

    /// <summary>
    /// The tokenizer's encoding of the prompt (or, for a folder without tokenizer.json, fixed ids), its text
    /// repeated to at least <see cref="MinPromptTokens"/> tokens, so flash attention spans several blocks of
    /// 64 keys (over a single block it does the naive algorithm's arithmetic).
    /// </summary>
    private static List<int> Prompt(LoadedModel model, string text)
    {
        var config = model.Model.Config;
        var prompt = model.Tokenizer?.Encode(text, addSpecialTokens: true).ToList() ?? [];
        var more = model.Tokenizer?.Encode(" " + text) ?? Enumerable.Range(1, 16).Select(i => i * 7 % config.VocabSize).ToArray();
        if (more.Length == 0) throw new CliException("--prompt: the prompt encodes to no tokens");
        while (prompt.Count < MinPromptTokens) prompt.AddRange(more);
        return prompt.Take(config.MaxPositionEmbeddings).ToList();
    }

    private const int MinPromptTokens = 160;

    /// <summary>
    /// One prompt through a reference and a candidate run of each model: the CPU reference kernels (with naive
    /// attention: the most independent path) against the CPU's fast kernels, and against CUDA when a device is
    /// usable and allowed. Returns the number of comparisons out of tolerance.
    /// </summary>
    private static int RunModels(CliConsole io, IReadOnlyList<ModelChoice> choices, int seed, string backend, string promptText,
                                 double? tolerance)
    {
        using var reference = Context.CreateCpu(0, LlmkCpuKernels.Reference);
        var candidates = new List<Context>();
        try
        {
            if (backend is "all" or "cpu")
                candidates.Add(Context.CreateCpu());
            if (backend is "all" or "cuda")
            {
                var cuda = Context.TryCreateCuda(out var reason);
                if (cuda is null && backend == "cuda")
                    throw new CliException($"--backend cuda: no usable CUDA device: {reason}");
                if (cuda is null)
                    io.Out.MarkupLineInterpolated($"[grey]models: no CUDA ({reason}); the CPU's fast kernels are compared with its reference[/]");
                else
                    candidates.Add(cuda);
            }
            return choices.Sum(choice => candidates.Sum(candidate => RunModel(io, choice, reference, candidate, seed, promptText, tolerance)));
        }
        finally
        {
            foreach (var ctx in candidates)
                ctx.Dispose();
        }
    }

    private static int RunModel(CliConsole io, ModelChoice choice, Context referenceContext, Context candidateContext, int seed,
                                string promptText, double? tolerance)
    {
        using var reference = ModelLoader.Load(referenceContext, choice, io, seed, LlmkAttentionAlgorithm.Naive);
        using var candidate = ModelLoader.Load(candidateContext, choice, io, seed, LlmkAttentionAlgorithm.Auto);
        string comparison = $"{referenceContext} with naive attention vs {candidateContext} ({candidate.Model.ActivationDtype} activations)";

        var prompt = Prompt(reference, promptText);
        var report = VerifyRunner.Compare(reference.Model, candidate.Model, prompt);

        // Between two f32 runs only summation order differs; against half-precision activations, bf16's
        // per-kernel error grows over the layers (the CudaMatchesCpu test's bounds). Quantized weights round
        // linear's input to 8-bit blocks, which turns a summation-order difference into a rounding step.
        bool half = candidate.Model.ActivationDtype != LlmkDtype.F32 || Tensor.IsQuantized(reference.WeightDtype);
        double bound = tolerance ?? (half ? 5e-2 : 1e-4);
        double top1Bound = half ? 0.75 : 1.0;

        var table = new Table().Border(TableBorder.Rounded)
            .Title(Markup.Escape($"{reference.Name}: {comparison}, {prompt.Count} prompt tokens"))
            .AddColumns("tensor", "max abs", "rel L2", "bound", "result");
        int failed = 0;
        foreach (var diff in report.Layers.Append(report.Logits))
        {
            bool ok = diff.NonFinite == 0 && diff.RelL2 <= bound;
            if (!ok) failed++;
            table.AddRow(diff.Name, Format.Error(diff.MaxAbs), Format.Error(diff.RelL2), Format.Error(bound),
                         ok ? "[green]pass[/]" : $"[red]FAIL{(diff.NonFinite > 0 ? $" ({diff.NonFinite} non-finite)" : "")}[/]");
        }
        bool top1 = report.Top1Agreement >= top1Bound;
        if (!top1) failed++;
        table.AddRow("top-1 tokens", "", $"{report.Top1Agreements}/{report.Positions} agree", $">= {top1Bound:P0}",
                     top1 ? "[green]pass[/]" : "[red]FAIL[/]");
        io.Out.Write(table);
        return failed == 0 ? 0 : 1;
    }
}
