"""Lines of code in fewshot/ at git revisions: physical lines and source lines
(lines holding code: not blank, comment or docstring lines).

    python benchmarks/code_size.py 0aaa6f6 HEAD
"""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize

_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
         tokenize.ENDMARKER}


def source_lines(text: str) -> int:
    docstrings = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in _SKIP:
            lines.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docstrings)
    return len(lines)


def sizes(rev: str) -> tuple[int, int]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout

    files = [f for f in git("ls-tree", "-r", rev, "--name-only", "fewshot").split()
             if f.endswith(".py")]
    texts = [git("show", f"{rev}:{f}") for f in files]
    return sum(t.count("\n") for t in texts), sum(source_lines(t) for t in texts)


if __name__ == "__main__":
    for rev in sys.argv[1:] or ["HEAD"]:
        physical, source = sizes(rev)
        print(f"{rev}: {physical} physical lines, {source} source lines")
