#!/usr/bin/env python3
"""The PostgreSQL manual's HTML pages as a `strata docs ingest` JSONL corpus.

usage: pg-manual-corpus.py HTML_DIR OUT.jsonl [PAGE ...]

HTML_DIR is the manual as Debian's `postgresql-doc-15` ships it
(`/usr/share/doc/postgresql-doc-15/html`; scripts/fetch-pg-manual.sh unpacks it
without installing). With PAGE arguments (file names without `.html`), only those
pages; else every page but the navigation-only ones (the index, the tables of
contents).

Each page is one document (key: the file name without `.html`; title: its
`<title>`, "Introduction" pages with their chapter's name appended), split at
paragraph boundaries into chunks of roughly 600 to 1,000 characters; an overlong
paragraph is split at sentence boundaries, an overlong program listing at line
boundaries. Navigation headers and footers and the per-page tables of contents are
dropped; paragraphs, list items, definition lists, table rows, headings and program
listings are kept as plain text. Standard library only.
"""

import html.parser
import json
import os
import re
import sys

TARGET = 800
MAX = 1000
MIN = 600
HARD_MAX = 1500

BLOCKS = {"p", "li", "dt", "dd", "tr", "h1", "h2", "h3", "h4", "h5", "pre", "caption"}
SKIP_CLASSES = {"navheader", "navfooter", "toc", "list-of-tables", "list-of-figures",
                "list-of-examples", "indexdiv"}
NAV_PAGES = {"index", "bookindex", "biblio"}


class Page(html.parser.HTMLParser):
    """Collects a page's title and its text blocks, in order."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.in_title = False
        self.blocks = []  # (kind, text)
        self.skip_depth = 0  # depth inside a skipped div
        self.stack = []  # open tags (for skip depth)
        self.current = None  # (tag, [parts])
        self.cell_parts = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        if tag == "title":
            self.in_title = True
        if self.skip_depth:
            if tag == "div":
                self.skip_depth += 1
            return
        if tag == "div" and classes & SKIP_CLASSES:
            self.skip_depth = 1
            return
        if tag in BLOCKS:
            self.flush()
            self.current = (tag, [])
        elif tag in ("td", "th") and self.current and self.current[0] == "tr":
            self.current[1].append(" | " if self.current[1] else "")
        elif tag == "br" and self.current:
            self.current[1].append("\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        if self.skip_depth:
            if tag == "div":
                self.skip_depth -= 1
            return
        if tag in BLOCKS and self.current and self.current[0] == tag:
            self.flush()

    def handle_data(self, data):
        if self.in_title:
            self.title += data
        if self.skip_depth or self.current is None:
            return
        self.current[1].append(data)

    def flush(self):
        if self.current is None:
            return
        tag, parts = self.current
        self.current = None
        text = "".join(parts)
        if tag == "pre":
            text = text.strip("\n")
        else:
            text = re.sub(r"\s+", " ", text).strip()
            text = re.sub(r"^\|\s*", "", text)
        if text:
            self.blocks.append((tag, text))


def split_long(kind, text):
    """Pieces of an overlong block: sentences (prose) or lines (listings)."""
    if len(text) <= MAX:
        return [text]
    units = text.split("\n") if kind == "pre" else re.split(r"(?<=[.!?])\s+", text)
    joiner = "\n" if kind == "pre" else " "
    pieces, current = [], ""
    for unit in units:
        while len(unit) > HARD_MAX:  # a sentence or line longer than any chunk
            if current:
                pieces.append(current)
                current = ""
            pieces.append(unit[:MAX])
            unit = unit[MAX:]
        candidate = current + joiner + unit if current else unit
        if len(candidate) > MAX and current:
            pieces.append(current)
            current = unit
        else:
            current = candidate
    if current:
        pieces.append(current)
    return pieces


def chunks_of(blocks):
    """Blocks packed into chunks of about TARGET characters, at block boundaries."""
    pieces = []
    for kind, text in blocks:
        pieces.extend(split_long(kind, text))
    chunks, current = [], ""
    for piece in pieces:
        candidate = current + "\n\n" + piece if current else piece
        if current and len(candidate) > MAX and len(current) >= MIN // 2:
            chunks.append(current)
            current = piece
        else:
            current = candidate
        if len(current) >= TARGET:
            chunks.append(current)
            current = ""
    if current:
        if chunks and len(current) < MIN // 2 and len(chunks[-1]) + len(current) + 2 <= HARD_MAX:
            chunks[-1] += "\n\n" + current
        else:
            chunks.append(current)
    return chunks


def chapter_of(path):
    """The `Up` page's title, for pages titled only "Introduction"."""
    with open(path, encoding="utf-8") as f:
        head = f.read(4000)
    m = re.search(r'accesskey="u" href="[^"]*" title="([^"]*)"', head)
    return m.group(1) if m else ""


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    html_dir, out = sys.argv[1], sys.argv[2]
    wanted = sys.argv[3:]
    names = wanted or sorted(
        f[:-5] for f in os.listdir(html_dir)
        if f.endswith(".html") and f[:-5] not in NAV_PAGES
    )
    docs = 0
    total = 0
    with open(out, "w", encoding="utf-8") as sink:
        for name in names:
            path = os.path.join(html_dir, name + ".html")
            page = Page()
            with open(path, encoding="utf-8") as f:
                page.feed(f.read())
            page.flush()
            title = re.sub(r"\s+", " ", page.title).strip()
            if re.fullmatch(r"[\d.]+ Introduction", title):
                title += f" ({chapter_of(path)})"
            chunks = chunks_of(page.blocks)
            if not chunks:
                continue
            docs += 1
            total += len(chunks)
            sink.write(json.dumps({
                "source": "postgresql-manual",
                "key": name,
                "title": title,
                "metadata": {
                    "url": f"https://www.postgresql.org/docs/15/{name}.html",
                    "section": title,
                    "license": "PostgreSQL",
                },
                "chunks": [{"content": c, "metadata": {"part": i}} for i, c in enumerate(chunks)],
            }, ensure_ascii=False) + "\n")
    print(f"{docs} documents, {total} chunks -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
