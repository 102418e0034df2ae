#!/usr/bin/env python3
"""Checks that a generated man page lost no text of its Markdown source: every `code`
span of the source (keys, values, paths, log lines) must appear in the page as groff
renders it. A converter bug that drops a table row, a list item or an HTML cell fails
here rather than silently shortening the reference.

Usage: check-text.py SOURCE.md PAGE
"""

import re
import subprocess
import sys


def main():
    source, page = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as f:
        markdown = f.read()
    markdown = re.sub(r"<!--.*?-->", "", markdown, flags=re.S)
    # Fenced blocks are rendered verbatim; their lines are checked as they are.
    fences = re.findall(r"^ *(?:```|~~~)[^\n]*\n(.*?)^ *(?:```|~~~)", markdown, flags=re.S | re.M)
    prose = re.sub(r"^ *(?:```|~~~)[^\n]*\n.*?^ *(?:```|~~~)", "", markdown, flags=re.S | re.M)
    spans = [m.group(2) for m in re.finditer(r"(`+)(.+?)\1(?!`)", prose, flags=re.S)]
    wanted = [s.strip() for s in spans] + [l.strip() for f in fences for l in f.splitlines()]
    rendered = subprocess.run(
        ["groff", "-man", "-Tutf8", "-P-cbou", "-rLL=200n", page],
        check=True,
        capture_output=True,
        text=True,
        env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
    ).stdout
    flat = " ".join(rendered.split())
    missing = sorted({w for w in wanted if w and " ".join(w.split()) not in flat})
    for w in missing:
        print(f"{page}: missing from the rendered page: {w}", file=sys.stderr)
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
