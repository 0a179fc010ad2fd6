#!/usr/bin/env python3
"""Rewrites a CUDA source or header into host C++ for the emulator (emu_runtime.h):
  kernel<T><<<grid, block, shared, stream>>>(args);  ->  ::emu::launch(dim3(grid), dim3(block), (size_t)(shared),
                                                          [&]() { kernel<T>(args); }, "kernel",
                                                          reinterpret_cast<const void*>(kernel<T>));
  extern __shared__ [__align__(n)] type name[];       ->  type* name = (type*)::emu::dynamic_shared;
and puts #include "emu_runtime.h" first. Everything else is left alone, so the emulator runs the kernels'
own code. usage: preprocess.py input.cu output.cpp"""
import re
import sys


def match_forward(text, i, open_ch, close_ch):
    """Index just past the bracket that closes text[i] == open_ch."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c == open_ch:
            depth += 1
        elif c == close_ch:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced " + open_ch)


def split_top(text):
    """Splits on commas outside (), <> and {}."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c in "(<{[":
            depth += 1
        elif c in ")>}]":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def rewrite_launches(text):
    out, pos = [], 0
    while True:
        at = text.find("<<<", pos)
        if at < 0:
            out.append(text[pos:])
            return "".join(out)
        close = text.find(">>>", at)
        k = close + 3
        while k < len(text) and text[k].isspace():
            k += 1
        if close < 0 or k >= len(text) or text[k] != "(" or text[at - 1] == " " and text[at - 2] == "y":
            # Not a launch (a comment mentioning <<<...>>>): keep it.
            out.append(text[pos:close + 3])
            pos = close + 3
            continue
        # The callee: an identifier (with ::) optionally followed by a template argument list.
        j = at
        while j > 0 and text[j - 1].isspace():
            j -= 1
        end_callee = j
        if text[j - 1] == ">":
            depth = 0
            while True:
                j -= 1
                if text[j] == ">":
                    depth += 1
                elif text[j] == "<":
                    depth -= 1
                    if depth == 0:
                        break
        while j > 0 and (text[j - 1].isalnum() or text[j - 1] in "_:"):
            j -= 1
        callee = text[j:end_callee]
        config = split_top(text[at + 3:close])
        args_end = match_forward(text, k, "(", ")")
        args = text[k:args_end]
        grid, block = config[0], config[1]
        shared = config[2] if len(config) > 2 else "0"
        out.append(text[pos:j])
        name = callee.split("<")[0].split("::")[-1].strip()
        out.append(f"::emu::launch(dim3({grid}), dim3({block}), (size_t)({shared}), [&]() {{ {callee}{args}; }}, "
                   f"\"{name}\", reinterpret_cast<const void*>({callee}))")
        pos = args_end


def rewrite_extern_shared(text):
    pattern = re.compile(r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([\w:\s]+?)\s+(\w+)\s*\[\s*\]\s*;")
    return pattern.sub(lambda m: f"{m.group(1)}* {m.group(2)} = reinterpret_cast<{m.group(1)}*>(::emu::dynamic_shared);",
                       text)


def main():
    source, target = sys.argv[1], sys.argv[2]
    with open(source) as f:
        text = f.read()
    text = rewrite_extern_shared(rewrite_launches(text))
    with open(target, "w") as f:
        f.write('#include "emu_runtime.h"\n#line 1 "' + source + '"\n' + text)


if __name__ == "__main__":
    main()
