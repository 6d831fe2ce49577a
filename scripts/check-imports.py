#!/usr/bin/env python3
"""Fails when the modules of src/ import each other in a cycle.

A cycle means neither module can be read, tested or changed without the other; the
layering docs/ARCHITECTURE.md describes (config and the pure protocol modules at the
bottom, proxy and server on top) only holds if nothing points back down-to-up.

Two graphs are built from the library's source (src/main.rs is its own crate):

- between top-level modules (auth, config, exchange, ..., and root files such as
  refusal.rs or secret.rs): an edge a -> b when a file of a names `crate::b...`;
- between files: an edge when a file names an item of another file, by `crate::` or
  `super::` path (resolved to the longest module prefix that is a file). A module's
  own submodules are part of it: a parent declaring or re-exporting its children is
  not an edge, a child using its parent's items is.

Test code (`#[cfg(test)]` items and the files they declare) is left out: a test may
build its fixtures with any module. Comments and string literals are left out too.

Every cycle found is listed with one reference per edge (file:line), and the script
exits 1; `--graph` prints the top-level graph instead. Standard library only; run from
anywhere: `python3 scripts/check-imports.py`. scripts/test.sh (and so CI) runs it.
"""

import os
import re
import sys

# Top-level cycles that are known and accepted, each with the reason. Empty is the aim;
# a cycle listed here that no longer exists is an error too, so the list only shrinks.
KNOWN_TOP_LEVEL_CYCLES = {
    # ("a", "b"): "why it cannot be removed yet",
}

MAX_CYCLES_SHOWN = 60

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CHAR_LITERAL = re.compile(r"'(?:\\(?:u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'")
RAW_STRING = re.compile(r'b?r(#*)"')


def blank(text, start, end):
    """`text[start:end]` as spaces, newlines kept (so line numbers survive)."""
    return "".join("\n" if c == "\n" else " " for c in text[start:end])


def starts_mid_word(text, i):
    return i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")


def strip_comments_and_strings(text):
    """The text with comments, string and char literals blanked (lifetimes kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(blank(text, i, end))
            i = end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text, i, j))
            i = j
        elif c in "rb" and RAW_STRING.match(text, i) and not starts_mid_word(text, i):
            m = RAW_STRING.match(text, i)
            close = '"' + m.group(1)
            end = text.find(close, m.end())
            end = n if end < 0 else end + len(close)
            out.append(blank(text, i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(blank(text, i, j + 1))
            i = j + 1
        elif c == "'":
            m = CHAR_LITERAL.match(text, i)
            if m:
                out.append(blank(text, i, m.end()))
                i = m.end()
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def skip_item(text, i):
    """Index just past the item starting at `i` (ends at `;` or a balanced `{}`)."""
    n, depth = len(text), 0
    while i < n:
        c = text[i]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == ";" and depth == 0:
            return i + 1
        elif c == "{" and depth == 0:
            braces, i = 1, i + 1
            while i < n and braces:
                braces += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            return i
        i += 1
    return n


CFG_TEST = re.compile(r"#\[cfg\(test\)\]")
ATTRIBUTE = re.compile(r"\s*#\[[^\]]*\]")
MOD_DECL = re.compile(r"\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*;")


def remove_test_items(text):
    """The text without `#[cfg(test)]` items, and the names of test-only child modules."""
    test_mods = set()
    while True:
        m = CFG_TEST.search(text)
        if not m:
            return text, test_mods
        i = m.end()
        while True:
            a = ATTRIBUTE.match(text, i)
            if not a:
                break
            i = a.end()
        decl = MOD_DECL.match(text, i)
        if decl:
            test_mods.add(decl.group(1))
        end = skip_item(text, i)
        text = text[: m.start()] + blank(text, m.start(), end) + text[end:]


def module_files():
    """{module path tuple: file path} for the library crate."""
    files = {}
    for dirpath, _, names in os.walk(ROOT):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, ROOT)
            if rel == "main.rs":
                continue
            parts = rel[:-3].split(os.sep)
            if parts == ["lib"]:
                parts = []
            elif parts[-1] == "mod":
                parts = parts[:-1]
            files[tuple(parts)] = path
    return files


def parse_tree(text, i, prefix, out):
    """Parses a path (tree) at `i` after `prefix::`; appends full paths to `out`."""
    n = len(text)

    def ws(j):
        while j < n and text[j].isspace():
            j += 1
        return j

    i = ws(i)
    if i < n and text[i] == "{":
        i += 1
        while True:
            i = ws(i)
            if i >= n or text[i] == "}":
                return i + 1
            i = parse_tree(text, i, prefix, out)
            i = ws(i)
            if i < n and text[i] == ",":
                i += 1
    if i < n and text[i] == "*":
        out.append(prefix)
        return i + 1
    m = IDENT.match(text, i)
    if not m:
        out.append(prefix)
        return i
    name = m.group(0)
    path = prefix if name == "self" else prefix + [name]
    j = ws(m.end())
    if text.startswith("::", j):
        k = ws(j + 2)
        if k < n and (text[k] == "{" or text[k] == "*" or IDENT.match(text, k)):
            return parse_tree(text, k, path, out)
    out.append(path)
    return m.end()


PATH_START = re.compile(r"(?<![A-Za-z0-9_:])((?:super\s*::\s*)+|crate\s*::|self\s*::)")


def references(text, module):
    """[(line, full path)] of every `crate::`/`super::`/`self::` path in the text."""
    refs = []
    for m in PATH_START.finditer(text):
        head = m.group(1)
        if head.startswith("crate"):
            base = []
        elif head.startswith("self"):
            base = list(module)
        else:
            ups = head.count("super")
            if ups > len(module):
                continue
            base = list(module[: len(module) - ups])
        found = []
        parse_tree(text, m.end(), base, found)
        line = text.count("\n", 0, m.start()) + 1
        refs.extend((line, tuple(p)) for p in found)
    return refs


def resolve(path, modules):
    for k in range(len(path), -1, -1):
        if path[:k] in modules:
            return path[:k]
    return ()


def elementary_cycles(graph):
    """All elementary cycles (Johnson's algorithm), each starting at its least node."""
    nodes = sorted(graph)
    cycles = []

    def strongly_connected(sub):
        index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in sorted(sub.get(v, ())):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                comps.append(comp)

        for v in sorted(sub):
            if v not in index:
                visit(v)
        return comps

    for s_index, start in enumerate(nodes):
        allowed = set(nodes[s_index:])
        sub = {v: {w for w in graph.get(v, ()) if w in allowed} for v in allowed}
        comp = next((c for c in strongly_connected(sub) if start in c), set())
        if len(comp) < 2:
            continue
        sub = {v: {w for w in sub[v] if w in comp} for v in comp}
        blocked, block_map, path = set(), {v: set() for v in comp}, []

        def unblock(v):
            blocked.discard(v)
            while block_map[v]:
                unblock(block_map[v].pop())

        def circuit(v):
            found = False
            path.append(v)
            blocked.add(v)
            for w in sorted(sub[v]):
                if w == start:
                    cycles.append(tuple(path))
                    found = True
                elif w not in blocked and circuit(w):
                    found = True
            if found:
                unblock(v)
            else:
                for w in sub[v]:
                    block_map[w].add(v)
            path.pop()
            return found

        sys.setrecursionlimit(10000)
        circuit(start)
    return cycles


def main():
    modules = module_files()
    test_only = set()
    cleaned = {}
    for module in sorted(modules, key=len):
        if any(module[:k] in test_only for k in range(1, len(module) + 1)):
            test_only.add(module)
            continue
        with open(modules[module], encoding="utf-8") as f:
            text = strip_comments_and_strings(f.read())
        text, test_mods = remove_test_items(text)
        test_only.update(module + (name,) for name in test_mods)
        cleaned[module] = text

    file_edges, top_edges = {}, {}
    for module, text in cleaned.items():
        for line, path in references(text, module):
            target = resolve(path, modules)
            if target == module or target[: len(module)] == module or target in test_only:
                continue  # itself, its own submodules, or test code
            where = "%s:%d" % (os.path.relpath(modules[module], os.path.join(ROOT, "..")), line)
            src, dst = "/".join(module), "/".join(target)
            file_edges.setdefault(src, {}).setdefault(dst, where)
            if module and target and module[0] != target[0]:
                top_edges.setdefault(module[0], {}).setdefault(target[0], where)

    if "--graph" in sys.argv:
        for a in sorted(top_edges):
            print("%s -> %s" % (a, " ".join(sorted(top_edges[a]))))
        return 0

    failed = False
    for title, edges, known in (
        ("top-level modules", top_edges, KNOWN_TOP_LEVEL_CYCLES),
        ("files", file_edges, {}),
    ):
        graph = {v: set(ws) for v, ws in edges.items()}
        for ws in list(graph.values()):
            for w in ws:
                graph.setdefault(w, set())
        cycles = elementary_cycles(graph)
        new = [c for c in cycles if c not in known]
        stale = [c for c in known if c not in cycles]
        for c in stale:
            failed = True
            print("check-imports: known cycle between %s is gone; remove it from "
                  "KNOWN_TOP_LEVEL_CYCLES: %s" % (title, " -> ".join(c + (c[0],))))
        if new:
            failed = True
            print("check-imports: %d import cycle(s) between %s:" % (len(new), title))
            for c in new[:MAX_CYCLES_SHOWN]:
                print("  " + " -> ".join(c + (c[0],)))
                for a, b in zip(c, c[1:] + (c[0],)):
                    print("      %s -> %s  (%s)" % (a, b, edges[a][b]))
            if len(new) > MAX_CYCLES_SHOWN:
                print("  ... and %d more" % (len(new) - MAX_CYCLES_SHOWN))
    if failed:
        return 1
    tops = {module[0] for module in cleaned if module}
    print("check-imports: no import cycles (%d top-level modules, %d files)" % (len(tops), len(cleaned)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
