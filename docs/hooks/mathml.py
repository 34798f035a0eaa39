"""MkDocs hook: formulas are turned into MathML when the site is built, so a page needs no script and no web font.

``pymdownx.arithmatex`` in generic mode keeps every ``$...$`` and ``$$...$$`` away from Markdown and wraps it as
``<span class="arithmatex">\\(...\\)</span>`` or ``<div class="arithmatex">\\[...\\]</div>``. This hook replaces each
with the MathML that `latex2mathml` (a pure-Python package from PyPI, MIT licence, in the ``docs`` extra) makes of
it. Browsers render MathML natively (Chromium and Edge since 109, Firefox, Safari), so the site works offline and
from ``file://``; a browser-side renderer (MathJax, KaTeX) would need its script and fonts from a CDN or copied in.

A formula latex2mathml cannot convert, or one with a command it does not know, fails the build naming the page and
the formula. `render_math` is a plain function; tests/test_doc_snippets.py calls it on every formula of the docs.
"""

from __future__ import annotations

import html
import re
from typing import Any

# What arithmatex (generic mode) writes: the TeX HTML-escaped, between \( \) inline or \[ \] for a display.
_FORMULA = re.compile(r'<(?P<tag>span|div) class="arithmatex">\s*\\(?P<open>[(\[])(?P<tex>.*?)\\[)\]]\s*</(?P=tag)>',
                      re.DOTALL)
# latex2mathml writes a command it does not know as itself, e.g. <mi>\foo</mi>: a typo would reach the page silently.
_UNKNOWN_COMMAND = re.compile(r"<m[io][^>]*>(\\[A-Za-z]+)</m[io]>")


class MathError(ValueError):
    """A formula that cannot be converted, with where it is."""


def render_math(page_html: str, where: str = "<page>") -> str:
    """``page_html`` with every arithmatex formula replaced by MathML; the TeX stays as the ``alttext``."""
    from latex2mathml.converter import convert  # the docs extra; imported here so the tests can skip without it

    def replace(match: re.Match[str]) -> str:
        tex = html.unescape(match["tex"]).strip()
        display = match["open"] == "["
        try:
            mathml = convert(tex, display="block" if display else "inline")
        except Exception as exc:  # noqa: BLE001 - latex2mathml raises many kinds; each is a bad formula here
            raise MathError(f"{where}: cannot convert the formula {tex!r} to MathML: {exc!r}") from None
        unknown = _UNKNOWN_COMMAND.search(mathml)
        if unknown:
            raise MathError(f"{where}: the formula {tex!r} uses {unknown[1]}, which latex2mathml does not know")
        mathml = mathml.replace("<math ", f'<math alttext="{html.escape(tex)}" ', 1)
        return f'<div class="arithmatex">{mathml}</div>' if display else f'<span class="arithmatex">{mathml}</span>'

    return _FORMULA.sub(replace, page_html)


def on_page_content(html_text: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    """Replace the page's formulas by MathML (mkdocs hook)."""
    return render_math(html_text, where=page.file.src_uri)
