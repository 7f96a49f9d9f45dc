"""report.html: the Markdown report as one self-contained HTML file (figures inlined, tables styled and sortable).

A small converter for the Markdown subset ``helix.report.render_markdown`` writes, not a general one (the
repo takes no new dependencies): ``#`` headings, paragraphs, ``-`` / ``1.`` lists, pipe tables, fenced code
blocks, ``![alt](file.png)`` images, ``[text](href)`` links, ``**bold**``, ``*italic*``, ```code``` and
````code```` spans, and ``<a id="..."></a>`` anchor lines, which pass through as they are. Any other HTML
in the text is escaped, so a table cell such as "weights > HBM" prints as written.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml",
        ".gif": "image/gif"}
ANCHOR = re.compile(r'^<a id="[A-Za-z0-9_.:-]+"></a>$')
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
IMAGE_LINE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)$")
BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")
TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
BOLD = re.compile(r"\*\*(.+?)\*\*")
ITALIC = re.compile(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])")
NUMBER = re.compile(r"^[-+−]?[\d,]*\.?\d+(e[-+]?\d+)?\s*(%|×|x)?$", re.IGNORECASE)

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232b;
       max-width: 1280px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.9rem; border-bottom: 2px solid #2c3e50; padding-bottom: .3rem; }
h2 { font-size: 1.45rem; margin-top: 2.4rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
h3 { font-size: 1.15rem; }
a { color: #0b63c5; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f1f3f5;
       padding: .05rem .3rem; border-radius: 3px; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .8rem 1rem; overflow-x: auto; }
pre code { background: none; padding: 0; }
img { max-width: 100%; height: auto; display: block; margin: 1rem 0; border: 1px solid #e1e4e8; }
.table-wrap { overflow-x: auto; margin: 1rem 0; }
table { border-collapse: collapse; font-size: 13.5px; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; vertical-align: top; }
th { background: #2c3e50; color: #fff; text-align: left; cursor: pointer; user-select: none; min-width: 3rem; }
th[data-sort="asc"]::after { content: " ▲"; } th[data-sort="desc"]::after { content: " ▼"; }
tbody tr:nth-child(even) { background: #f3f6f9; }
tbody tr:hover { background: #e4eefb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
"""

# Click a header to sort its table by that column (numbers numerically, "–" last); click again to reverse.
SORT_SCRIPT = """
function cellKey(td) {
  const t = td.textContent.trim().replace(/,/g, "").replace("−", "-").replace(/\\s*(%|×|x)$/i, "");
  const n = Number(t);
  return t === "" || t === "–" ? null : (Number.isNaN(n) ? td.textContent.trim().toLowerCase() : n);
}
document.querySelectorAll("table").forEach(table => {
  table.querySelectorAll("th").forEach((th, col) => th.addEventListener("click", () => {
    const body = table.tBodies[0], dir = th.dataset.sort === "asc" ? -1 : 1;
    table.querySelectorAll("th").forEach(h => delete h.dataset.sort);
    th.dataset.sort = dir === 1 ? "asc" : "desc";
    const rows = Array.from(body.rows).map(r => [cellKey(r.cells[col] || r.insertCell()), r]);
    rows.sort(([a], [b]) => a === null ? 1 : b === null ? -1 : typeof a === typeof b ?
      (a < b ? -dir : a > b ? dir : 0) : (typeof a === "number" ? -dir : dir));
    rows.forEach(([, r]) => body.appendChild(r));
  }));
});
"""


def image_src(src: str, out_dir: Path) -> str:
    """A data URI for a local image beside the report; other sources (URLs, missing files) unchanged."""
    path = out_dir / src
    mime = MIME.get(path.suffix.lower())
    if mime is None or "://" in src or not path.is_file():
        return src
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def inline(text: str, out_dir: Path) -> str:
    """Inline Markdown to HTML: code spans are set aside first so nothing inside them is interpreted."""
    spans: list[str] = []

    def keep(fragment: str) -> str:
        spans.append(fragment)
        return f"\x00{len(spans) - 1}\x00"

    text = CODE_SPAN.sub(lambda m: keep(f"<code>{html.escape(m.group(2).strip())}</code>"), text)
    text = INLINE_IMAGE.sub(lambda m: keep(f'<img alt="{html.escape(m.group(1))}" '
                                           f'src="{html.escape(image_src(m.group(2), out_dir))}">'), text)
    text = LINK.sub(lambda m: keep(f'<a href="{html.escape(m.group(2))}">') + m.group(1) + keep("</a>"), text)
    text = html.escape(text, quote=False)
    text = ITALIC.sub(r"<em>\1</em>", BOLD.sub(r"<strong>\1</strong>", text))
    return re.sub("\x00(\\d+)\x00", lambda m: spans[int(m.group(1))], text)


def split_row(line: str) -> list[str]:
    """Cells of a pipe-table row; a backslash-escaped pipe stays inside its cell."""
    line = line.strip()
    line = line[1:] if line.startswith("|") else line
    line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]


def table(header: list[str], rows: list[list[str]], out_dir: Path) -> str:
    def cell(tag: str, text: str) -> str:
        attr = ' class="num"' if tag == "td" and NUMBER.match(text.strip()) else ""  # right-aligned figures
        return f"<{tag}{attr}>{inline(text, out_dir)}</{tag}>"

    head = "<tr>" + "".join(cell("th", h) for h in header) + "</tr>"
    body = "\n".join("<tr>" + "".join(cell("td", c) for c in r) + "</tr>" for r in rows)
    return f'<div class="table-wrap"><table>\n<thead>{head}</thead>\n<tbody>\n{body}\n</tbody>\n</table></div>'


def is_block_start(lines: list[str], i: int) -> bool:
    line = lines[i]
    return bool(HEADING.match(line) or ANCHOR.match(line.strip()) or IMAGE_LINE.match(line.strip())
                or line.startswith("```") or BULLET.match(line) or NUMBERED.match(line)
                or (line.lstrip().startswith("|") and i + 1 < len(lines) and TABLE_RULE.match(lines[i + 1])))


def to_html(markdown_text: str, out_dir: Path) -> str:
    """The HTML body for ``markdown_text``; images are looked up relative to ``out_dir``."""
    lines, out, i = markdown_text.splitlines(), [], 0
    while i < len(lines):
        line, stripped = lines[i], lines[i].strip()
        if not stripped:
            i += 1
        elif line.startswith("```"):  # fenced block: verbatim up to the closing fence
            lang, i, code = line[3:].strip(), i + 1, []
            while i < len(lines) and not lines[i].startswith("```"):
                code.append(lines[i])
                i += 1
            i += 1
            cls = f' class="language-{html.escape(lang)}"' if lang else ""
            out.append(f"<pre><code{cls}>{html.escape(chr(10).join(code))}</code></pre>")
        elif ANCHOR.match(stripped):
            out.append(stripped)
            i += 1
        elif m := HEADING.match(line):
            level = len(m.group(1))
            out.append(f"<h{level}>{inline(m.group(2), out_dir)}</h{level}>")
            i += 1
        elif m := IMAGE_LINE.match(stripped):
            alt, src = html.escape(m.group(1)), html.escape(image_src(m.group(2), out_dir))
            out.append(f'<figure><img alt="{alt}" src="{src}"></figure>')
            i += 1
        elif stripped.startswith("|") and i + 1 < len(lines) and TABLE_RULE.match(lines[i + 1]):
            header, rows, i = split_row(line), [], i + 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(split_row(lines[i]))
                i += 1
            out.append(table(header, rows, out_dir))
        elif BULLET.match(line) or NUMBERED.match(line):
            pattern, tag, items = (BULLET, "ul", []) if BULLET.match(line) else (NUMBERED, "ol", [])
            while i < len(lines) and (m := pattern.match(lines[i])):
                items.append(f"<li>{inline(m.group(1), out_dir)}</li>")
                i += 1
            out.append(f"<{tag}>\n" + "\n".join(items) + f"\n</{tag}>")
        else:  # a paragraph: consecutive lines up to a blank line or the start of another block
            para = [stripped]
            i += 1
            while i < len(lines) and lines[i].strip() and not is_block_start(lines, i):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{inline(' '.join(para), out_dir)}</p>")
    return "\n".join(out)


def write_html(out_dir: Path, markdown_text: str, title: str) -> Path:
    """Write ``out_dir/report.html``: ``markdown_text`` as one file with every local image embedded."""
    out_dir = Path(out_dir)
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"{to_html(markdown_text, out_dir)}\n<script>{SORT_SCRIPT}</script>\n</body>\n</html>\n")
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
