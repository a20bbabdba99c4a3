"""Print the table of a results JSON as reStructuredText, for the documentation pages.

    python benchmarks/to_rst.py benchmarks/results/latest.json
    python benchmarks/to_rst.py benchmarks/results/memory.json
    python benchmarks/to_rst.py benchmarks/results/few_labels.json

Markdown pipe tables become ``list-table`` directives; other lines become paragraphs.
"""

import argparse
import json
import sys


def md_to_rst(text):
    out, rows = [], []

    def flush():
        if not rows:
            return
        header, body = rows[0], rows[1:]
        out.append(".. list-table::")
        out.append("   :header-rows: 1")
        out.append("")
        for row in [header] + body:
            for i, cell in enumerate(row):
                cell = cell.replace("*", r"\*") or " "
                out.append(("   * - " if i == 0 else "     - ") + cell)
        out.append("")
        rows.clear()

    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|"):
            cells = [c.strip() for c in s.strip("|").split("|")]
            if all(set(c) <= set(":-") and c for c in cells):
                continue  # the |---|---| separator
            rows.append(cells)
            continue
        flush()
        out.append(line.replace("*", r"\*"))
    flush()
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", help="a results JSON with a Markdown table "
                        "(its 'table' or 'markdown' entry)")
    args = parser.parse_args(argv)
    with open(args.results) as f:
        results = json.load(f)
    text = results.get("table") or results.get("markdown")
    if not text:
        parser.error(f"{args.results} holds no Markdown table (no 'table' or 'markdown' "
                     "entry); its script prints its tables instead.")
    print(md_to_rst(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
