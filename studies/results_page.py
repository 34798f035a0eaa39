"""Rebuild the measured parts of docs/results.md from finished studies.

    python studies/results_page.py [STUDIES_OUT=runs/studies]

docs/results.md marks each generated part with ``<!-- study:NAME -->`` ... ``<!-- /study:NAME -->``; this replaces
what lies between with ``STUDIES_OUT/NAME/table.md`` (headings moved down two levels) and the study's two figures,
copied to ``docs/results/``. Everything outside the markers is prose written from those numbers.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
PAGE = ROOT / "docs" / "results.md"
FIGURES = ROOT / "docs" / "results"
MARKER = re.compile(r"<!-- study:(?P<name>[\w.+-]+) -->\n.*?<!-- /study:(?P=name) -->", re.S)


def generated(name: str, out: Path) -> str:
    table = (out / name / "table.md").read_text().splitlines()
    body = [("##" + line) if line.startswith("#") else line for line in table[1:]]  # drop "# Study NAME"
    FIGURES.mkdir(exist_ok=True)
    figures = []
    for figure in sorted((out / name).glob("*.png")):
        target = FIGURES / f"{name}-{figure.name}"
        shutil.copyfile(figure, target)
        figures.append(f"![{name}: {figure.stem.replace('_', ' ')}](results/{target.name})")
    return "\n".join(body).strip() + "\n\n" + "\n\n".join(figures) + "\n"


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "runs" / "studies"
    page = PAGE.read_text()
    names = [m.group("name") for m in MARKER.finditer(page)]
    found = [n for n in names if (out / n / "table.md").is_file()]
    page = MARKER.sub(lambda m: f"<!-- study:{m['name']} -->\n{generated(m['name'], out)}<!-- /study:{m['name']} -->"
                      if m["name"] in found else m.group(0), page)  # a study not in `out` keeps its section
    PAGE.write_text(page)
    kept = [n for n in names if n not in found]
    print(f"{PAGE}: rebuilt {', '.join(found) or 'nothing'} from {out}" + (f"; kept {', '.join(kept)}" if kept else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
