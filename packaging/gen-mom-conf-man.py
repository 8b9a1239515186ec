#!/usr/bin/env python3
"""Write mom.conf(5) from doc/configuration.md, so the reference is written once.

    packaging/gen-mom-conf-man.py [doc/configuration.md] > doc/man/mom.conf.5

The page's tables (``| Key | Type | Default | Meaning |`` under ``## [section]``)
become ``.TP`` entries; its paragraphs become text. Only the Markdown that page
uses is understood: headings, paragraphs, tables, inline code and emphasis.
tests/distro checks that doc/man/mom.conf.5 is this script's output.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

VERSION_FILE = Path(__file__).resolve().parents[1] / "mom" / "__init__.py"
DATE = "2026-11-29"  # of the page's last change; fixed so that the output is reproducible


def version() -> str:
    m = re.search(r'__version__\s*=\s*"([^"]+)"', VERSION_FILE.read_text())
    return m.group(1) if m else "unknown"


def escape(text: str) -> str:
    """Roff-safe text: backslashes, hyphens in words, a leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def inline(text: str) -> str:
    """`code` bold, *emphasis* italic; the rest escaped."""
    out = []
    for part in re.split(r"(`[^`]*`|\*[^*]+\*)", text):
        if part.startswith("`") and part.endswith("`") and len(part) >= 2:
            out.append(f"\\fB{escape(part[1:-1])}\\fR")
        elif part.startswith("*") and part.endswith("*") and len(part) >= 2:
            out.append(f"\\fI{escape(part[1:-1])}\\fR")
        else:
            out.append(escape(part))
    return "".join(out)


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def convert(markdown: str) -> str:
    out = [f'.TH MOM.CONF 5 "{DATE}" "mom-kvm {version()}" "File Formats"',
           ".SH NAME", "mom.conf \\- configuration file of momd, the Memory Overcommitment Manager"]
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            out.extend([".PP", inline(" ".join(paragraph))])
            paragraph.clear()

    first_heading = True
    for line in markdown.splitlines():
        if line.startswith("# "):
            continue  # the title: NAME says it
        if line.startswith("## "):
            flush()
            out.append(f'.SH "{escape(line[3:].strip()).upper()}"')
            continue
        if first_heading and not out[-1].startswith(".SH DESCRIPTION") and line.strip() and \
                not any(x.startswith('.SH "') for x in out):
            out.append(".SH DESCRIPTION")
            first_heading = False
        if line.startswith("|"):
            flush()
            row = cells(line)
            if row[0] in ("Key", "") or set(row[0]) <= {"-", " "}:
                continue  # the header and its rule
            key, kind, default, meaning = row
            out.append(".TP")
            out.append(f"{inline(key)} ({inline(kind)}; default {inline(default)})")
            out.append(inline(meaning))
            continue
        if not line.strip():
            flush()
            continue
        paragraph.append(line.strip())
    flush()
    out += [".SH FILES", ".TP", "\\fI/etc/mom/mom.conf\\fR", "The packaged configuration.",
            ".TP", "\\fI/etc/mom.conf\\fR, \\fI/etc/momd.conf\\fR",
            "Read, in this order, when /etc/mom/mom.conf does not exist (the original MOM's places).",
            ".SH SEE ALSO", "\\fBmomd\\fR(8), \\fBmomctl\\fR(1)"]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "doc" / "configuration.md"
    sys.stdout.write(convert(source.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
