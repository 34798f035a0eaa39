// MathJax settings for pymdownx.arithmatex in generic mode, which wraps $...$ as \(...\) and $$...$$ as \[...\].
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true, processEnvironments: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" }
};
