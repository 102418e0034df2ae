#!/usr/bin/env python3
"""Turns one of the project's Markdown documents into a man(7) page.

The man pages are not written twice: oxinetd.toml(5) is docs/configuration.md and
oxinetd(8) is man/oxinetd.8.md, converted by this script when the package is built
(packaging/build-deb, through man/build). So the reference and its man page cannot
drift, and a key added to docs/configuration.md appears in the man page with no
further step.

It knows the Markdown the project writes, generically, not any section or key:
headings (# is the NAME line, ## a section, ### and #### subsections), paragraphs,
"-" and "1." lists (nested by indentation, with lazy continuation lines), fenced code
blocks, pipe tables (rendered as .TP lists, the man way, since tbl tables with long
cells overflow a terminal), HTML side-by-side tables (<table><tr><th>...; each cell
gets its column header as a label), and inline `code`, **bold**, *italic* and links.
A paragraph made only of links to anchors of the page (a table of contents) is left
out: man has its own sections. Characters outside ASCII become groff escapes, so the
page does not depend on the reader's locale.

Usage: md2man.py --name NAME --section N [--description TEXT] [--source TEXT]
                 [--see-also "a(5), b(8)"] INPUT.md > OUTPUT
"""

import argparse
import re
import sys

# Non-ASCII characters the documents use, as groff's own named glyphs (portable to
# every output device); any other becomes \[uXXXX].
GLYPHS = {
    "\u2265": r"\(>=",
    "\u2264": r"\(<=",
    "\u2192": r"\(->",
    "\u2190": r"\(<-",
    "\u00b7": r"\(pc",
    "\u2014": r"\(em",
    "\u2013": r"\(en",
    "\u00d7": r"\(mu",
    "\u2018": r"\(oq",
    "\u2019": r"\(cq",
    "\u201c": r"\(lq",
    "\u201d": r"\(rq",
    "\u00a0": r"\~",
    "\u2026": r"\&...",
}


def escape(text, code=False):
    """Text to roff: backslashes escaped, non-ASCII as glyphs; in code every "-" is a
    minus (options and ranges copy-paste as typed), in prose only a leading one."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append(r"\e")
        elif ch == "-" and code:
            out.append(r"\-")
        elif ord(ch) > 127:
            out.append(GLYPHS.get(ch, r"\[u%04X]" % ord(ch)))
        else:
            out.append(ch)
    text = "".join(out)
    if not code:
        # "-f", "--check", "-20": a dash starting a word is a minus sign.
        text = re.sub(r"(?<![\w\\-])(-+)(?=[\w])", lambda m: r"\-" * len(m.group(1)), text)
    return text


# The manual each section belongs to, as man-pages(7) names them.
MANUALS = {"1": "User Commands", "5": "File Formats Manual", "8": "System Manager's Manual"}

INLINE = re.compile(
    r"\\(?P<escaped>[!-/:-@\[-`{-~])"
    r"|(?P<code>`+)(?P<codetext>.+?)(?P=code)(?!`)"
    r"|\[(?P<linktext>(?:[^\[\]]|\[[^\]]*\])+)\]\((?P<target>[^)\s]+)\)"
    r"|\*\*(?P<bold>.+?)\*\*"
    r"|(?<![\w*])\*(?P<italic>[^\s*](?:.*?[^\s*])?)\*(?![\w*])"
)


def inline(text, font="R"):
    """Markdown inline markup to roff font escapes; `font` is the font to return to."""
    out = []
    pos = 0
    for m in INLINE.finditer(text):
        out.append(prose(text[pos : m.start()], font))
        if m.group("escaped"):
            out.append(escape(m.group("escaped")))
        elif m.group("code"):
            # \% at the start of each word holding code: a path or key is never
            # hyphenated at a line end (the start of the word, since \% inside a word
            # would be a hyphenation point).
            code = escape(m.group("codetext").strip(), code=True)
            code = code.replace(" ", r" \%")
            before = "".join(out)
            start = max(before.rfind(" "), before.rfind("\n")) + 1
            if not before[start:].startswith(r"\%"):
                out[:] = [before[:start] + r"\%" + before[start:]]
            out.append(r"\fB" + code + "\\f" + font)
        elif m.group("linktext") is not None:
            label = inline(m.group("linktext"), font)
            target = m.group("target")
            if target.startswith("#"):
                out.append(label)
            elif m.group("linktext") == target:
                out.append(r"\fI" + escape(target, code=True) + "\\f" + font)
            else:
                out.append(label + r" (\fI" + escape(target, code=True) + "\\f" + font + ")")
        elif m.group("bold") is not None:
            out.append(r"\fB" + inline(m.group("bold"), "B") + "\\f" + font)
        else:
            out.append(r"\fI" + inline(m.group("italic"), "I") + "\\f" + font)
        pos = m.end()
    out.append(prose(text[pos:], font))
    return "".join(out)


def prose(text, font):
    """Escaped prose; a reference to a man page, xinetd.conf(5), gets its name in bold.
    Neither it nor a path (/etc/services) is hyphenated."""
    text = re.sub(
        r"(?<![\\\w])([a-z][\w.]*\w)\(([1-9])\)",
        lambda m: r"\%\fB" + m.group(1) + "\\f" + font + "(" + m.group(2) + ")",
        escape(text),
    )
    return re.sub(r"(?:^|(?<=[ (]))(?=/\w)", r"\\%", text)


def plain(text):
    """A heading or label without markup, for macro arguments."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return text.replace("`", "").replace("**", "")


def text_lines(roff):
    """A paragraph as roff input: one sentence per line, as roff wants (it then puts
    the sentence space itself), and no line starting with a control character."""
    lines = re.split(r"(?<=[.?!]) +(?=[A-Z(\\])", roff.strip())
    return [("\\&" + line) if line[:1] in (".", "'") else line for line in lines]


def macro_arg(text):
    return '"' + escape(plain(text)).replace('"', r"\(dq") + '"'


def split_row(line):
    """Cells of a pipe-table row; a | inside `code` or escaped as \\| stays in its cell."""
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    cells, cell, in_code, i = [], "", False, 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line) and line[i + 1] == "|":
            cell += "|"
            i += 2
            continue
        if ch == "`":
            in_code = not in_code
        if ch == "|" and not in_code:
            cells.append(cell.strip())
            cell = ""
        else:
            cell += ch
        i += 1
    cells.append(cell.strip())
    return cells


def is_table_of_contents(text):
    links = re.findall(r"\[(?:[^\[\]]|\[[^\]]*\])+\]\(#[^)]*\)", text)
    rest = re.sub(r"\[(?:[^\[\]]|\[[^\]]*\])+\]\(#[^)]*\)", "", text)
    rest = re.sub(r"[\s\u00b7,|;]", "", rest)
    return len(links) >= 3 and re.fullmatch(r"(\w+:)?", rest) is not None


LIST_ITEM = re.compile(r"^(?P<indent> *)(?P<marker>[-*+]|\d+[.)]) +(?P<text>.*)$")
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)")
HEADING = re.compile(r"^(?P<level>#{1,6}) +(?P<text>.*?)\s*#*\s*$")


class Converter:
    def __init__(self, name, section, description, source, see_also):
        self.name, self.section = name, section
        self.description, self.source, self.see_also = description, source, see_also
        self.out = []
        self.depth = 0  # list nesting levels opened with .RS
        self.in_list = False
        self.seen_section = False
        self.sections = set()

    def emit(self, *lines):
        self.out.extend(lines)

    def end_lists(self):
        while self.depth > 0:
            self.emit(".RE")
            self.depth -= 1
        self.in_list = False

    def ensure_section(self):
        """Text before the first ## heading is the DESCRIPTION."""
        if not self.seen_section:
            self.emit(".SH DESCRIPTION")
            self.seen_section = True

    def paragraph(self, text, indent=0):
        if is_table_of_contents(text):
            return
        self.ensure_section()
        if indent and self.in_list:
            self.emit('.IP "" %d' % self.item_width)
        else:
            self.end_lists()
            self.emit(".PP")
        self.emit(*text_lines(inline(text)))

    def heading(self, level, text):
        self.end_lists()
        if level == 1:
            if not self.description:
                self.description = text.split(" - ", 1)[-1] if " - " in text else text
            return
        if level == 2:
            title = plain(text)
            # Keys and values keep their case; prose headings are upper case, man style.
            if not re.search(r"[\[\]_=]", title):
                title = title.upper()
            self.seen_section = True
            self.sections.add(title)
            self.emit(".SH " + macro_arg(title))
        else:
            self.ensure_section()
            self.emit(".SS " + macro_arg(text))

    def quote(self, text):
        self.ensure_section()
        self.end_lists()
        self.emit(".RS 4", ".PP", *text_lines(inline(text)))
        self.emit(".RE")

    def list_item(self, indent, marker, text):
        self.ensure_section()
        if not self.in_list:
            self.end_lists()
            self.in_list = True
            self.base_indent = indent
        level = max(0, (indent - self.base_indent) // 2)
        while self.depth < level:
            self.emit(".RS %d" % self.item_width)
            self.depth += 1
        while self.depth > level:
            self.emit(".RE")
            self.depth -= 1
        if marker[0].isdigit():
            self.item_width = 4
            self.emit(".IP %s 4" % escape(marker))
        else:
            self.item_width = 2
            self.emit(r".IP \(bu 2")
        self.emit(*text_lines(inline(text)))

    def code_block(self, lines, indent):
        self.ensure_section()
        if indent and self.in_list:
            self.emit('.IP "" %d' % self.item_width)
        else:
            self.end_lists()
            self.emit(".PP", ".RS 4")
        self.emit(".EX")
        for line in lines:
            line = escape(line[indent:] if line[:indent].strip() == "" else line, code=True)
            self.emit(("\\&" + line) if line[:1] in (".", "'") else line)
        self.emit(".EE")
        if not (indent and self.in_list):
            self.emit(".RE")

    def table(self, rows):
        self.ensure_section()
        self.end_lists()
        header = split_row(rows[0])
        body = [split_row(row) for row in rows[2:]]
        for cells in body:
            self.emit(".TP", inline(cells[0], "R") if cells[0] else r"\&")
            rest = list(zip(header[1:], cells[1:]))
            lines = []
            for label, value in rest:
                if not value:
                    continue
                if len(header) > 2:
                    lines.append(r"\fI" + escape(plain(label)).capitalize() + r":\fR " + inline(value))
                else:
                    lines.append(inline(value))
            if not lines:
                lines = [r"\&"]
            for i, line in enumerate(lines):
                if i:
                    self.emit(".br")
                self.emit(*text_lines(line))

    def html(self, lines):
        self.ensure_section()
        """A side-by-side <table>: the text of <th> cells becomes the label of each
        <td> of the same column; other tags are dropped."""
        self.end_lists()
        for line in lines:
            for tag, text in re.findall(r"<(/?\w+)[^>]*>|([^<]+)", line):
                if tag == "tr":
                    self.column = 0
                elif tag == "th":
                    self.collect = True
                    self.headers_buf = ""
                elif tag == "/th":
                    self.collect = False
                    self.headers.append(self.headers_buf.strip())
                elif tag == "td":
                    if self.column < len(self.headers) and self.headers[self.column]:
                        self.emit(".PP", r"\fB" + inline(self.headers[self.column], "B") + r"\fR")
                    self.column += 1
                elif text and text.strip():
                    if getattr(self, "collect", False):
                        self.headers_buf += text
                    else:
                        self.paragraph(text.strip())

    def convert(self, markdown):
        markdown = re.sub(r"<!--.*?-->", "", markdown, flags=re.S)
        lines = markdown.splitlines()
        self.headers, self.column, self.item_width = [], 0, 2
        i = 0
        while i < len(lines):
            line = lines[i]
            if not line.strip():
                i += 1
                continue
            fence = FENCE.match(line)
            heading = HEADING.match(line)
            item = LIST_ITEM.match(line)
            if fence:
                indent, mark = len(fence.group("indent")), fence.group("fence")
                j = i + 1
                while j < len(lines) and not lines[j].strip().startswith(mark):
                    j += 1
                self.code_block(lines[i + 1 : j], indent)
                i = j + 1
            elif heading:
                self.heading(len(heading.group("level")), heading.group("text"))
                i += 1
            elif line.lstrip().startswith("|") and i + 1 < len(lines) and re.match(
                r"^\s*\|?\s*:?-{3,}", lines[i + 1]
            ):
                j = i
                while j < len(lines) and lines[j].lstrip().startswith("|"):
                    j += 1
                self.table(lines[i:j])
                i = j
            elif line.startswith(">"):
                j = i
                while j < len(lines) and lines[j].startswith(">"):
                    j += 1
                self.quote(" ".join(line.lstrip(">").strip() for line in lines[i:j]))
                i = j
            elif line.lstrip().startswith("<"):
                j = i
                while j < len(lines) and lines[j].lstrip().startswith("<"):
                    j += 1
                self.html(lines[i:j])
                i = j
            else:
                indent = len(line) - len(line.lstrip())
                text = [item.group("text") if item else line.strip()]
                j = i + 1
                while j < len(lines) and lines[j].strip():
                    nxt = lines[j]
                    if (
                        LIST_ITEM.match(nxt)
                        or FENCE.match(nxt)
                        or HEADING.match(nxt)
                        or nxt.lstrip().startswith(("|", "<"))
                    ):
                        break
                    text.append(nxt.strip())
                    j += 1
                joined = " ".join(text)
                if item:
                    self.list_item(indent, item.group("marker"), joined)
                else:
                    self.paragraph(joined, indent)
                i = j
        self.end_lists()
        if self.see_also and "SEE ALSO" not in self.sections:
            self.emit(".SH \"SEE ALSO\"")
            self.emit(*text_lines(see_also_roff(self.see_also)))

    def page(self, markdown):
        self.convert(markdown)
        head = [
            '.\\" Generated by man/md2man.py; edit the Markdown source instead.',
            ".TH %s %s \"\" %s %s"
            % (
                macro_arg(self.name.upper()),
                self.section,
                macro_arg(self.source),
                macro_arg(MANUALS.get(self.section[:1], "")),
            ),
            ".SH NAME",
            escape(self.name) + r" \- " + escape(self.description),
        ]
        return "\n".join(head + self.out) + "\n"


def see_also_roff(text):
    return re.sub(
        r"([\w.-]+)\((\d\w*)\)",
        lambda m: r"\%\fB" + escape(m.group(1)) + r"\fR(" + m.group(2) + ")",
        text,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--section", required=True)
    parser.add_argument("--description", default="")
    parser.add_argument("--source", default="oxinetd")
    parser.add_argument("--see-also", default="")
    parser.add_argument("input")
    args = parser.parse_args()
    with open(args.input, encoding="utf-8") as f:
        markdown = f.read()
    converter = Converter(args.name, args.section, args.description, args.source, args.see_also)
    sys.stdout.write(converter.page(markdown))


if __name__ == "__main__":
    main()
