"""Print the table of a results JSON as reStructuredText, for the documentation pages.

    python benchmarks/to_rst.py benchmarks/results/latest.json
    python benchmarks/to_rst.py benchmarks/results/memory.json
    python benchmarks/to_rst.py benchmarks/results/few_labels.json

Markdown pipe tables become ``list-table`` directives; other lines become paragraphs.
"""

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


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        results = json.load(f)
    print(md_to_rst(results.get("table") or results["markdown"]))
