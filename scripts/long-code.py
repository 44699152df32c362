#!/usr/bin/env python3
"""Lists the Rust sources over the size the project aims for: files over 500 lines and
functions over 80 (the bar of issue 14). A function may stay longer with its reason in a
comment; this only lists them. Usage: scripts/long-code.py [DIR...] (default: crates bench
fuzz examples). Exits 0 either way.

A small lexer blanks strings (raw and multi-line), chars and comments, then matches each
`fn`'s braces, so braces in format strings do not count."""
import os
import re
import sys

MAX_FILE, MAX_FN = 500, 80


def blank(src):
    """`src` with every string, char literal and comment replaced by spaces (newlines kept)."""
    out, i, n = [], 0, len(src)
    spaces = lambda text: re.sub(r"[^\n]", " ", text)
    while i < n:
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i) + 2
        elif (m := re.match(r'b?r(#*)"', src[i:i + 12])) and not (i and (src[i - 1].isalnum() or src[i - 1] == "_")):
            j = src.find('"' + m.group(1), i + len(m.group(0))) + 1 + len(m.group(1))
        elif src[i] == '"':
            j = i + 1
            while src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            j += 1
        elif m := re.match(r"'(\\.|\\u\{[0-9a-fA-F]+\}|[^'\\])'", src[i:i + 12]):
            j = i + len(m.group(0))
        else:
            out.append(src[i])
            i += 1
            continue
        out.append(spaces(src[i:j]))
        i = j
    return "".join(out)


def long_functions(text):
    """(first line, lines, name) of each function over MAX_FN lines."""
    for m in re.finditer(r"\bfn\s+(\w+)", text):
        j = m.end()
        while j < len(text) and text[j] not in "{;":
            j += 1
        if j >= len(text) or text[j] == ";":
            continue
        depth, end = 0, j
        while end < len(text):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                break
            end += 1
        lines = text.count("\n", m.start(), end) + 1
        if lines > MAX_FN:
            yield text.count("\n", 0, m.start()) + 1, lines, m.group(1)


def main(dirs):
    files, functions = [], []
    for root in dirs:
        for path, subdirs, names in os.walk(root):
            subdirs[:] = [d for d in subdirs if d != "target"]
            for name in sorted(n for n in names if n.endswith(".rs")):
                file = os.path.join(path, name)
                src = open(file, encoding="utf-8").read()
                if src.count("\n") > MAX_FILE:
                    files.append((src.count("\n"), file))
                functions += [(n, f"{file}:{line}", fn) for line, n, fn in long_functions(blank(src))]
    for n, file in sorted(files, reverse=True):
        print(f"file {n:5} lines  {file}")
    for n, where, fn in sorted(functions, reverse=True):
        print(f"fn   {n:5} lines  {where} {fn}")


if __name__ == "__main__":
    main(sys.argv[1:] or [d for d in ("crates", "bench", "fuzz", "examples") if os.path.isdir(d)])
