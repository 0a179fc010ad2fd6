#!/usr/bin/python3
"""llmk's CPU backend against llama.cpp (llama-bench) on the same random-weight Llama models.

    /usr/bin/python3 bench/cpu/compare_llamacpp.py --llama-bench /path/to/llama-bench \
        [--llama-commit HASH] [--out bench/results/cpu-vs-llamacpp-DATE.md] \
        [--shapes "stories110M tinyllama"] [--dtypes "f32 f16 bf16 q8_0 q4_0 q4_k_m"] [--threads "1 2"] [--repeats 3] \
        [--llama-quantize /path/to/llama-quantize] \
        [--workdir /tmp/llmk-bench-models] [--llmk-extra-args "..."] [--llmk-root DIR] [--no-build]

For each shape and dtype, bench/cpu/make_models.py writes one set of weights as a Hugging Face folder (llmk) and a
GGUF file (llama.cpp), cached in --workdir. llmk is built once (Release). Then, for each (shape, dtype, threads)
and each repeat, llama-bench runs once (prefill 128 [and 512 for stories110M], decode 32) and llmk's `bench` runs
once per prompt size and once for decode, so both peers see the same machine state; medians over the repeats go
into a Markdown table. A quantized dtype (q8_0, q4_0, q4_k_m) is the f32 GGUF quantized by llama.cpp's own
llama-quantize (--llama-quantize), and both engines read that one file. Memory read bandwidth (bench/cpu/membw.c) is measured at the start and at the end.
"""
import argparse
import datetime
import glob
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, HERE)
import make_models  # noqa: E402

DECODE_TOKENS = 32
RUN_TIMEOUT_S = 3600
# llama-quantize types, and the bytes per weight of the embedding each gives (Q4_K_M keeps token_embd in Q4_K).
QUANTS = {"q8_0": 34 / 32, "q4_0": 18 / 32, "q4_k_m": 144 / 256}


def prompts_for(shape):
    return [128, 512] if shape == "stories110M" else [128]


def words(s):
    return [w for w in re.split(r"[\s,]+", s) if w]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, logf, cwd=None, env=None, timeout=RUN_TIMEOUT_S):
    """Runs cmd; returns (rc, stdout, stderr) and appends everything to logf."""
    t0 = time.time()
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc = 124
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")) + f"\ntimeout after {timeout} s"
    logf.write(f"\n$ {shlex.join(cmd)}\n# rc={rc} {time.time() - t0:.1f} s\n--- stdout\n{out}\n--- stderr\n{err}\n")
    logf.flush()
    return rc, out, err


# ---- parsing ----

NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"


def parse_llmk(text):
    """{'prefill': tok/s, 'decode': tok/s} from llmk bench's table: the row whose first word is the phase; its
    first number is the token count, the next one the median tok/s."""
    found = {}
    for line in text.splitlines():
        m = re.search(r"[A-Za-z]+", line)
        if not m or m.group(0) not in ("prefill", "decode"):
            continue
        if line[:m.start()].strip(" │|┃║") != "":
            continue
        nums = re.findall(NUM, line[m.end():])
        if len(nums) >= 2:
            found[m.group(0)] = float(nums[1])
    return found


def parse_llama_bench(text):
    """{'prefill P': tok/s, 'decode': tok/s} from llama-bench -o json, plus the build commit it reports."""
    i = text.find("[")
    data = json.loads(text[i:]) if i >= 0 else []
    found, commit = {}, None
    for t in data:
        commit = t.get("build_commit", commit)
        n_p, n_g, ts = int(t.get("n_prompt", 0)), int(t.get("n_gen", 0)), float(t["avg_ts"])
        if n_p > 0 and n_g == 0:
            found[f"prefill {n_p}"] = ts
        elif n_g > 0 and n_p == 0:
            found["decode"] = ts
    return found, commit


def membw(binary, threads, logf):
    rc, out, _ = run([binary, str(threads), "1024", "7"], logf, timeout=600)
    m = re.search(r"best_gbps=(" + NUM + ")", out)
    return float(m.group(1)) if rc == 0 and m else None


# ---- machine facts ----

def cpu_facts():
    model, flags = "unknown", []
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == "Model name":
                model = v.strip()
            elif k.strip() == "Flags":
                flags = [f for f in v.split() if re.match(r"^(avx|avx2|fma|f16c|avx512\w*|avx_vnni\w*|amx\w*)$", f)]
        cores = os.cpu_count()
    except OSError:
        cores = os.cpu_count()
    return model, flags, cores


def git_facts(root):
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return (head or "unknown") + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def fmt(x, spec=".1f"):
    return "n/a" if x is None else format(x, spec)


def med(xs):
    return statistics.median(xs) if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-bench", required=True, help="path of a CPU build of llama.cpp's llama-bench")
    ap.add_argument("--llama-quantize", default=None, help="llama.cpp's llama-quantize, for the quantized dtypes")
    ap.add_argument("--llama-commit", default=None, help="llama.cpp commit the binary was built from (for the report)")
    ap.add_argument("--out", default=None, help="Markdown result file (default bench/results/cpu-vs-llamacpp-DATE.md)")
    ap.add_argument("--shapes", default="stories110M tinyllama")
    ap.add_argument("--dtypes", default="f32 f16 bf16")
    ap.add_argument("--threads", default="1 2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/llmk-bench-models", help="where the models (and logs) go")
    ap.add_argument("--seed", type=int, default=1234, help="seed of the random weights")
    ap.add_argument("--llmk-extra-args", default="", help="extra arguments for `llmk bench` (e.g. a --backend)")
    ap.add_argument("--llmk-root", default=REPO, help="LlmKernels checkout to build and run (default: this one)")
    ap.add_argument("--no-build", action="store_true", help="use the existing Release build of llmk")
    ap.add_argument("--contended", action="store_true",
                    help="also decode the first shape and dtype at the highest thread count while one busy process "
                         "competes for a core (how gracefully each engine shares the machine)")
    a = ap.parse_args()

    shapes, dtypes, threads = words(a.shapes), words(a.dtypes), [int(t) for t in words(a.threads)]
    for s in shapes:
        if s not in make_models.SHAPES:
            ap.error(f"--shapes: unknown shape {s}; known: {', '.join(make_models.SHAPES)}")
    for d in dtypes:
        if d not in make_models.DTYPES and d not in QUANTS:
            ap.error(f"--dtypes: unknown dtype {d}; known: {', '.join(make_models.DTYPES + tuple(QUANTS))}")
        if d in QUANTS and not (a.llama_quantize and os.access(a.llama_quantize, os.X_OK)):
            ap.error(f"--dtypes {d}: give --llama-quantize (llama.cpp's quantizer makes the file both engines read)")
    if a.repeats < 1 or not threads or min(threads) < 1:
        ap.error("--repeats and --threads must be at least 1")
    llama_bench = os.path.abspath(a.llama_bench)
    if not os.access(llama_bench, os.X_OK):
        ap.error(f"--llama-bench {a.llama_bench}: not an executable")
    today = datetime.date.today().isoformat()
    out_path = os.path.abspath(a.out or os.path.join(REPO, "bench", "results", f"cpu-vs-llamacpp-{today}.md"))
    root = os.path.abspath(a.llmk_root)
    a.workdir = os.path.abspath(a.workdir)
    os.makedirs(a.workdir, exist_ok=True)
    logdir = os.path.join(a.workdir, "logs")
    os.makedirs(logdir, exist_ok=True)
    log_path = os.path.join(logdir, time.strftime("run-%Y%m%d-%H%M%S.log"))
    logf = open(log_path, "w")
    log(f"raw output of every run: {log_path}")
    started = time.time()
    command_line = shlex.join(["/usr/bin/python3", os.path.relpath(os.path.abspath(sys.argv[0]), REPO)] + sys.argv[1:])

    # 1. Models (cached). A quantized one is one GGUF file for both engines.
    models = {}
    weight_bytes = {}
    for s in shapes:
        for d in dtypes:
            log(f"model {s} {d}")
            if d not in QUANTS:
                models[(s, d)] = make_models.make(s, d, a.seed, a.workdir)
                weight_bytes[(s, d)] = make_models.weight_bytes_per_token(s, d)
                continue
            _, f32_gguf = make_models.make(s, "f32", a.seed, a.workdir)
            path = os.path.join(a.workdir, f"{s}-{d}.gguf")
            if not os.path.exists(path):
                rc, _, err = run([os.path.abspath(a.llama_quantize), f32_gguf, path + ".tmp", d], logf)
                if rc != 0:
                    sys.exit(f"compare_llamacpp: llama-quantize {d} failed:\n{err[-2000:]}")
                os.replace(path + ".tmp", path)
            models[(s, d)] = (path, path)
            # the file's tensors, less the embedding table but one row of it
            shape = make_models.SHAPES[s]
            table = shape["vocab"] * shape["hidden"] * QUANTS[d]
            weight_bytes[(s, d)] = os.path.getsize(path) - table * (1 - 1 / shape["vocab"])

    # 2. membw and llmk builds.
    membw_bin = os.path.join(a.workdir, "membw")
    rc, _, err = run(["nice", "-n", "19", "gcc", "-O3", "-march=native", "-fopenmp", "-o", membw_bin,
                      os.path.join(HERE, "membw.c")], logf)
    if rc != 0:
        sys.exit(f"compare_llamacpp: building membw failed:\n{err}")
    if not a.no_build:
        log("building llmk (Release)")
        env = dict(os.environ)
        env.setdefault("LLMK_CUDA", "OFF")
        rc, out, err = run(["nice", "-n", "19", "dotnet", "build", "-c", "Release",
                            os.path.join(root, "managed", "LlmKernels.Cli")], logf, env=env)
        if rc != 0:
            tail = "\n".join((out + err).splitlines()[-30:])
            sys.exit(f"compare_llamacpp: dotnet build failed (log {log_path}):\n{tail}")
    dlls = sorted(glob.glob(os.path.join(root, "managed", "LlmKernels.Cli", "bin", "Release", "net*", "llmk.dll")),
                  key=os.path.getmtime)
    if not dlls:
        sys.exit(f"compare_llamacpp: no Release llmk.dll under {root}/managed/LlmKernels.Cli/bin (drop --no-build)")
    llmk_dll = dlls[-1]
    log(f"llmk: {llmk_dll}")

    bw_start = {t: membw(membw_bin, t, logf) for t in threads}
    log("membw at start: " + ", ".join(f"{t} threads {fmt(v, '.2f')} GB/s" for t, v in bw_start.items()))

    # 3. Interleaved runs.
    samples = {}  # (shape, dtype, threads, test) -> {'llmk': [...], 'llama.cpp': [...]}
    failures = []
    llama_reported_commit = None

    def add(key, peer, value):
        samples.setdefault(key, {"llmk": [], "llama.cpp": []})[peer].append(value)

    extra = shlex.split(a.llmk_extra_args)
    for s in shapes:
        ps = prompts_for(s)
        for d in dtypes:
            hf_dir, gguf = models[(s, d)]
            for t in threads:
                for r in range(1, a.repeats + 1):
                    tag = f"{s} {d} t={t} repeat {r}/{a.repeats}"
                    log(f"{tag}: llama-bench")
                    cmd = [llama_bench, "-m", gguf, "-t", str(t), "-p", ",".join(map(str, ps)),
                           "-n", str(DECODE_TOKENS), "-r", "1", "-o", "json"]
                    rc, out, err = run(cmd, logf)
                    try:
                        got, commit = parse_llama_bench(out) if rc == 0 else ({}, None)
                    except (ValueError, KeyError) as e:
                        got, commit = {}, None
                        err += f"\nunparsable output: {e}"
                    llama_reported_commit = commit or llama_reported_commit
                    want = [f"prefill {p}" for p in ps] + ["decode"]
                    if rc != 0 or any(w not in got for w in want):
                        last = (err.strip().splitlines() or [""])[-1]
                        failures.append(f"{tag}: llama-bench rc={rc}: {last}")
                    for k, v in got.items():
                        add((s, d, t, k), "llama.cpp", v)
                    # llmk: one run per prompt size (prefill only), then decode as llama-bench's tg32 does it:
                    # 32 single-token steps from an (almost) empty cache, here after a 1-token prompt.
                    for p, steps in [(p, 0) for p in ps] + [(1, DECODE_TOKENS)]:
                        what = f"decode {steps}" if steps else f"prompt {p}"
                        log(f"{tag}: llmk {what}")
                        # --backend cpu unless the extra arguments name a backend (e.g. cpu-reference).
                        backend = [] if any(x == "--backend" or x.startswith("--backend=") for x in extra) \
                            else ["--backend", "cpu"]
                        cmd = ["dotnet", llmk_dll, "bench", "--model", hf_dir] + backend + [
                               "--threads", str(t), "--prompt-tokens", str(p), "--decode-tokens", str(steps),
                               "--repeats", "1", "--warmup", "1"]
                        rc, out, err = run(cmd + extra, logf)
                        got = parse_llmk(out) if rc == 0 else {}
                        want = "decode" if steps else "prefill"
                        if rc != 0 or want not in got:
                            last = ((err.strip() or out.strip()).splitlines() or [""])[-1]
                            failures.append(f"{tag}: llmk {what} rc={rc}: {last}")
                        elif steps:
                            add((s, d, t, "decode"), "llmk", got["decode"])
                        else:
                            add((s, d, t, f"prefill {p}"), "llmk", got["prefill"])

    # 4. Optional: decode while a busy process holds one core, interleaved as above.
    contended = {"llmk": [], "llama.cpp": []}
    if a.contended:
        s, d, t = shapes[0], dtypes[0], max(threads)
        hf_dir, gguf = models[(s, d)]
        busy = subprocess.Popen(["sh", "-c", "while :; do :; done"])
        try:
            for r in range(1, a.repeats + 1):
                log(f"contended {s} {d} t={t} repeat {r}/{a.repeats}")
                rc, out, _ = run([llama_bench, "-m", gguf, "-t", str(t), "-p", "0", "-n", str(DECODE_TOKENS),
                                  "-r", "1", "-o", "json"], logf)
                got, _ = parse_llama_bench(out) if rc == 0 else ({}, None)
                if "decode" in got:
                    contended["llama.cpp"].append(got["decode"])
                rc, out, _ = run(["dotnet", llmk_dll, "bench", "--model", hf_dir, "--backend", "cpu", "--threads", str(t),
                                  "--prompt-tokens", "1", "--decode-tokens", str(DECODE_TOKENS), "--repeats", "1",
                                  "--warmup", "1"] + extra, logf)
                got = parse_llmk(out) if rc == 0 else {}
                if "decode" in got:
                    contended["llmk"].append(got["decode"])
        finally:
            busy.kill()

    bw_end = {t: membw(membw_bin, t, logf) for t in threads}
    log("membw at end: " + ", ".join(f"{t} threads {fmt(v, '.2f')} GB/s" for t, v in bw_end.items()))
    elapsed = time.time() - started

    # 4. Report.
    def bw_ref(t):
        vals = [v for v in (bw_start.get(t), bw_end.get(t)) if v]
        return sum(vals) / len(vals) if vals else None

    model_name, flags, cores = cpu_facts()
    dotnet_version = subprocess.run(["dotnet", "--version"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"# llmk CPU vs llama.cpp, {today}",
        "",
        "Both engines run the same random-weight Llama models (bench/cpu/make_models.py, seed "
        f"{a.seed}: one set of weights written as a Hugging Face folder for llmk and as a GGUF for llama.cpp, with "
        "llama.cpp's q/k row permutation; a quantized dtype is that f32 GGUF through llama.cpp's llama-quantize, one "
        "file that both engines read). Runs are interleaved: per (shape, dtype, threads) and repeat, llama-bench "
        "once, then llmk once per prompt size and once for decode. Figures are medians over the repeats.",
        "",
        f"- CPU: {model_name}, {cores} logical CPUs; flags: {' '.join(flags) or 'none of avx/avx2/avx512'}",
        f"- Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; run took {elapsed / 60:.1f} min",
        f"- llmk: {git_facts(root)}, .NET {dotnet_version}, `{os.path.relpath(llmk_dll, root)}`"
        + (f", extra args `{a.llmk_extra_args}`" if a.llmk_extra_args else ""),
        f"- llama.cpp: commit {a.llama_commit or 'not given (--llama-commit)'}"
        + (f" (llama-bench reports build {llama_reported_commit})" if llama_reported_commit else "")
        + f", `{os.path.basename(llama_bench)} -m MODEL.gguf -t T -p {{128[,512]}} -n {DECODE_TOKENS} -r 1 -o json`",
        f"- llmk commands: `dotnet llmk.dll bench --model DIR --backend cpu --threads T --prompt-tokens P "
        f"--decode-tokens 0 --repeats 1 --warmup 1` per prompt size P, and `--prompt-tokens 1 --decode-tokens "
        f"{DECODE_TOKENS}` for decode{(', plus ' + a.llmk_extra_args) if a.llmk_extra_args else ''}",
        "",
        "Command:",
        "",
        "```bash",
        command_line,
        "```",
        "",
        "Memory read bandwidth (bench/cpu/membw.c, sum over 1 GiB of doubles, best of 7 passes):",
        "",
        "| threads | start GB/s | end GB/s |",
        "|---:|---:|---:|",
    ]
    for t in threads:
        lines.append(f"| {t} | {fmt(bw_start.get(t), '.2f')} | {fmt(bw_end.get(t), '.2f')} |")
    lines += [
        "",
        "Decode rows: 32 single-token steps from an empty cache (llama.cpp's tg32; llmk after a 1-token prompt). "
        "Weight GB/s = weight bytes read per decode token (all matrices and norms, lm_head, one embedding row; "
        "KV cache not counted) × decode tok/s; % is against the mean of the start and end bandwidth at that "
        "thread count. Ratio = llmk / llama.cpp (above 1: llmk is faster).",
        "",
        "| shape | dtype | threads | test | llmk tok/s | llama.cpp tok/s | ratio | llmk weight GB/s "
        "| % of measured bandwidth | llama.cpp weight GB/s |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in shapes:
        tests = ["decode"] + [f"prefill {p}" for p in prompts_for(s)]
        for d in dtypes:
            wb = weight_bytes[(s, d)]
            for t in threads:
                for test in tests:
                    v = samples.get((s, d, t, test), {"llmk": [], "llama.cpp": []})
                    ml, mc = med(v["llmk"]), med(v["llama.cpp"])
                    ratio = ml / mc if ml and mc else None
                    gl = ml * wb / 1e9 if ml and test == "decode" else None
                    gc = mc * wb / 1e9 if mc and test == "decode" else None
                    pct = 100 * gl / bw_ref(t) if gl and bw_ref(t) else None
                    dec = test == "decode"
                    lines.append(f"| {s} | {d} | {t} | {test} | {fmt(ml)} | {fmt(mc)} | {fmt(ratio, '.2f')} | "
                                 f"{fmt(gl, '.2f') if dec else ''} | {fmt(pct, '.0f') if dec else ''} | "
                                 f"{fmt(gc, '.2f') if dec else ''} |")
    lines += ["", f"Weight bytes per decode token: " + ", ".join(
        f"{s} {d} {weight_bytes[(s, d)] / 1e6:.1f} MB" for s in shapes for d in dtypes) + "."
        + (" Quantized: from the GGUF file's size, less the embedding table but one row." if any(d in QUANTS for d in dtypes) else "")]
    if a.contended:
        s, d, t = shapes[0], dtypes[0], max(threads)
        lines += ["", f"Decode of {s} {d} at {t} threads while one busy process (`sh -c 'while :; do :; done'`) "
                  "competes for a core; share = contended / idle median of the table above:", "",
                  "| engine | contended tok/s | idle tok/s | share |", "|---|---:|---:|---:|"]
        for peer in ("llmk", "llama.cpp"):
            idle = med(samples.get((s, d, t, "decode"), {}).get(peer, []))
            busy_med = med(contended[peer])
            share = busy_med / idle if busy_med and idle else None
            lines.append(f"| {peer} | {fmt(busy_med)} | {fmt(idle)} | {fmt(100 * share if share else None, '.0f')}% |")
    if failures:
        lines += ["", "Failed runs:", ""] + [f"- {f}" for f in failures]
    lines += ["", "<details><summary>Samples (tok/s per repeat)</summary>", "",
              "| shape | dtype | threads | test | llmk | llama.cpp |", "|---|---|---:|---|---|---|"]
    for (s, d, t, test), v in sorted(samples.items(), key=lambda kv: (shapes.index(kv[0][0]), dtypes.index(kv[0][1]),
                                                                     kv[0][2], kv[0][3])):
        lines.append(f"| {s} | {d} | {t} | {test} | {', '.join(fmt(x) for x in v['llmk'])} | "
                     f"{', '.join(fmt(x) for x in v['llama.cpp'])} |")
    lines += ["", "</details>", ""]
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        f.write("\n".join(lines))
    logf.close()
    log(f"wrote {out_path} ({elapsed / 60:.1f} min); raw log {log_path}")
    if failures:
        log(f"{len(failures)} run(s) failed:\n  " + "\n  ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
