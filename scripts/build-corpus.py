#!/usr/bin/env python3
"""Build the sample documentation corpus used by `strata docs ingest`.

Reads a directory of PostgreSQL HTML documentation (as shipped by Debian's
postgresql-doc-NN package under usr/share/doc/postgresql-doc-NN/html/),
extracts the main text of a fixed list of pages, splits each page into chunks
of roughly 600-1000 characters at paragraph boundaries, and writes one JSON
document per line:

    {"source": "postgresql-docs", "key": "<page>", "title": "<title>",
     "metadata": {"url": ..., "section": ..., "license": "PostgreSQL"},
     "chunks": [{"content": "...", "metadata": {"part": 0}}, ...]}

Standard library only (Python 3.11+). The output is deterministic: the same
input directory always yields the same bytes.

Usage:
    python3 scripts/build-corpus.py HTML_DIR OUTPUT.jsonl [--version NN]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

SOURCE = "postgresql-docs"
LICENSE = "PostgreSQL"

# Pages to include, in output order. Missing files are skipped with a warning.
PAGES = [
    # Indexes
    "indexes-types",
    "indexes-multicolumn",
    "indexes-unique",
    "indexes-expressional",
    "indexes-partial",
    "gin-intro",
    "brin-intro",
    "sql-createindex",
    # Full text search
    "textsearch-intro",
    "textsearch-tables",
    "textsearch-controls",
    "textsearch-indexes",
    # MVCC / concurrency
    "mvcc-intro",
    "transaction-iso",
    "explicit-locking",  # includes 13.3.5 Advisory Locks
    # Maintenance and planning
    "routine-vacuuming",
    "using-explain",
    # JSON
    "datatype-json",
    "functions-json",
    # WAL and backups
    "wal-intro",
    "backup-dump",
    # Configuration and connections
    "config-setting",
    "runtime-config-connection",
    # Bulk loading, notifications
    "sql-copy",
    "sql-listen",
    "sql-notify",
    # Schema design and security
    "ddl-partitioning",
    "ddl-rowsecurity",
]

TARGET_MIN = 600     # preferred minimum chunk length
TARGET_MAX = 1000    # preferred maximum chunk length
SOFT_MAX = 1400      # allowed when it avoids a tiny chunk
SMALL = 400          # chunks below this may overflow TARGET_MAX up to SOFT_MAX
SEP = "\n\n"

SKIP_DIV_CLASSES = {"navheader", "navfooter", "toc"}
BLOCK_TAGS = {
    "p", "li", "dt", "dd", "pre", "tr", "blockquote", "table", "caption",
    "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "div", "body",
}
HEADING_TAGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
CELL_TAGS = {"td", "th"}
VOID_TAGS = {"br", "img", "hr", "meta", "link", "col", "area", "input"}


class PageExtractor(HTMLParser):
    """Collects the page <title> and a list of text blocks from the body."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title_parts: list[str] = []
        self.up_title = ""       # title of the navigation "Up" link (chapter)
        self.in_title = False
        self.in_body = False
        self.skip_depth = 0      # >0 while inside a skipped div
        self.pre_depth = 0
        self.heading_depth = 0
        self.buf: list[str] = []
        self.buf_is_pre = False
        self.buf_is_heading = False
        self.blocks: list[tuple[str, str]] = []  # (kind, text)

    # -- block handling -------------------------------------------------
    def flush(self) -> None:
        raw = "".join(self.buf)
        self.buf = []
        if self.buf_is_pre:
            raw = raw.replace("\r", "").replace("\u00a0", " ")
            lines = [ln.rstrip() for ln in raw.split("\n")]
            while lines and not lines[0].strip():
                lines.pop(0)
            while lines and not lines[-1].strip():
                lines.pop()
            text = "\n".join(lines)
            text = re.sub(r"\n{3,}", "\n\n", text)
            kind = "pre"
        else:
            text = re.sub(r"\s+", " ", raw).strip()
            kind = "heading" if self.buf_is_heading else "text"
        if text:
            self.blocks.append((kind, text))
        self.buf_is_pre = self.pre_depth > 0
        self.buf_is_heading = self.heading_depth > 0

    # -- parser callbacks -----------------------------------------------
    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self.in_title = True
            return
        if tag == "body":
            self.in_body = True
        if not self.in_body:
            return
        if tag == "a" and not self.up_title:
            a = dict(attrs)
            if a.get("accesskey") == "u":
                self.up_title = re.sub(r"\s+", " ", a.get("title") or "").strip()
        if self.skip_depth:
            if tag == "div":
                self.skip_depth += 1
            return
        if tag == "div":
            classes = set((dict(attrs).get("class") or "").split())
            if classes & SKIP_DIV_CLASSES:
                self.flush()
                self.skip_depth = 1
                return
        if tag in BLOCK_TAGS:
            self.flush()
            if tag == "pre":
                self.pre_depth += 1
            elif tag in HEADING_TAGS:
                self.heading_depth += 1
            self.buf_is_pre = self.pre_depth > 0
            self.buf_is_heading = self.heading_depth > 0
        elif tag in CELL_TAGS:
            self.buf.append(" ")
        elif tag == "br":
            self.buf.append("\n" if self.pre_depth else " ")

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
            return
        if not self.in_body:
            return
        if self.skip_depth:
            if tag == "div":
                self.skip_depth -= 1
            return
        if tag in BLOCK_TAGS:
            self.flush()
            if tag == "pre" and self.pre_depth:
                self.pre_depth -= 1
            elif tag in HEADING_TAGS and self.heading_depth:
                self.heading_depth -= 1
            self.buf_is_pre = self.pre_depth > 0
            self.buf_is_heading = self.heading_depth > 0
        elif tag in CELL_TAGS:
            self.buf.append(" ")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS:
            self.handle_endtag(tag)

    def handle_data(self, data):
        if self.in_title:
            self.title_parts.append(data)
            return
        if not self.in_body or self.skip_depth:
            return
        self.buf.append(data)

    def close(self):
        super().close()
        self.flush()


GENERIC_TITLES = {"introduction", "overview"}


def clean_title(raw: str, up_title: str = "") -> str:
    title = re.sub(r"\s+", " ", raw).strip()
    title = re.sub(r"^PostgreSQL:\s*Documentation:\s*[\w.]+:\s*", "", title)
    # "70.1. Introduction" is ambiguous on its own; name the chapter too.
    bare = re.sub(r"^[\d.]+\s*", "", title)
    if bare.lower() in GENERIC_TITLES and up_title:
        chapter = re.sub(r"^(Chapter|Part|Appendix)\s+[\w.]+\.?\s*", "", up_title)
        if chapter:
            title = f"{title} ({chapter})"
    return title


# -- chunking ------------------------------------------------------------

SENTENCE_RE = re.compile(r"(?<=[.!?:;])\s+(?=\S)")


def hard_split(text: str, limit: int) -> list[str]:
    """Split at whitespace so that every piece is <= limit characters."""
    pieces = []
    while len(text) > limit:
        cut = text.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = text.rfind("\n", 0, limit + 1)
        if cut <= 0:
            cut = limit
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        pieces.append(text)
    return [p for p in pieces if p]


def pack(units: list[str], joiner: str, limit: int) -> list[str]:
    out: list[str] = []
    cur = ""
    for u in units:
        if len(u) > limit:
            if cur:
                out.append(cur)
                cur = ""
            out.extend(hard_split(u, limit))
            continue
        cand = u if not cur else cur + joiner + u
        if len(cand) <= limit:
            cur = cand
        else:
            out.append(cur)
            cur = u
    if cur:
        out.append(cur)
    return out


def split_block(kind: str, text: str) -> list[tuple[str, str]]:
    """Split a block longer than TARGET_MAX into pieces (sentences or lines)."""
    if len(text) <= TARGET_MAX:
        return [(kind, text)]
    if kind == "pre":
        pieces = pack(text.split("\n"), "\n", TARGET_MAX)
    else:
        pieces = pack(SENTENCE_RE.split(text), " ", TARGET_MAX)
    return [(kind, p) for p in pieces if p.strip()]


def chunk_blocks(blocks: list[tuple[str, str]]) -> list[str]:
    units: list[tuple[str, str]] = []
    for kind, text in blocks:
        units.extend(split_block(kind, text))

    chunks: list[list[tuple[str, str]]] = []
    cur: list[tuple[str, str]] = []

    def cur_len(parts):
        return sum(len(t) for _, t in parts) + len(SEP) * max(0, len(parts) - 1)

    for unit in units:
        if not cur:
            cur = [unit]
            continue
        size = cur_len(cur) + len(SEP) + len(unit[1])
        if size <= TARGET_MAX or (cur_len(cur) < SMALL and size <= SOFT_MAX):
            cur.append(unit)
            continue
        # Do not end a chunk with a dangling heading: carry it forward.
        carry: list[tuple[str, str]] = []
        while len(cur) > 1 and cur[-1][0] == "heading":
            carry.insert(0, cur.pop())
        chunks.append(cur)
        cur = carry + [unit]
    if cur:
        # Merge a small tail into the previous chunk when it fits.
        if chunks and cur_len(cur) < 200 and cur_len(chunks[-1]) + len(SEP) + cur_len(cur) <= SOFT_MAX:
            chunks[-1].extend(cur)
        else:
            chunks.append(cur)

    out = []
    for parts in chunks:
        text = SEP.join(t for _, t in parts).strip()
        if text:
            out.append(text)
    return out


# -- main ----------------------------------------------------------------

def detect_version(html_dir: Path) -> str | None:
    index = html_dir / "index.html"
    if not index.is_file():
        return None
    m = re.search(r"<title>\s*PostgreSQL\s+(\d+)", index.read_text(encoding="utf-8"))
    return m.group(1) if m else None


def build_doc(html_dir: Path, page: str, version: str) -> dict | None:
    path = html_dir / f"{page}.html"
    if not path.is_file():
        print(f"warning: {path} not found, skipping", file=sys.stderr)
        return None
    parser = PageExtractor()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    title = clean_title("".join(parser.title_parts), parser.up_title) or page
    chunks = chunk_blocks(parser.blocks)
    if not chunks:
        print(f"warning: {path} has no text, skipping", file=sys.stderr)
        return None
    return {
        "source": SOURCE,
        "key": page,
        "title": title,
        "metadata": {
            "url": f"https://www.postgresql.org/docs/{version}/{page}.html",
            "section": title,
            "license": LICENSE,
        },
        "chunks": [
            {"content": c, "metadata": {"part": i}} for i, c in enumerate(chunks)
        ],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html_dir", type=Path, help="PostgreSQL HTML documentation directory")
    ap.add_argument("output", type=Path, help="output JSONL path")
    ap.add_argument("--version", help="major version for URLs (default: from index.html)")
    args = ap.parse_args(argv)

    if not args.html_dir.is_dir():
        ap.error(f"{args.html_dir} is not a directory")
    version = args.version or detect_version(args.html_dir)
    if not version:
        ap.error("cannot detect the PostgreSQL version; pass --version")

    docs = [d for d in (build_doc(args.html_dir, p, version) for p in PAGES) if d]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8", newline="\n") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")

    n_chunks = sum(len(d["chunks"]) for d in docs)
    print(
        f"wrote {len(docs)} documents, {n_chunks} chunks to {args.output} "
        f"({args.output.stat().st_size} bytes)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
