"""Resolve the report's Quarto shortcodes, and render it with Quarto or pandoc.

The report source is Quarto Markdown restricted to what pandoc also understands, plus
three shortcodes: `{{< include FILE >}}`, `{{< var NAME >}}` (from `_variables.yml`,
dotted names for nested keys) and `{{< meta NAME >}}` (from the front matter). They are
resolved here, before either engine sees the text, so both render the same content;
a shortcode left over is an error, never silent output.

Quarto is used when it is on PATH (or asked for); otherwise pandoc from the
`pypandoc-binary` wheel renders with `--standalone --embed-resources --citeproc`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scalezero.errors import UserError

SHORTCODE = re.compile(r"\{\{<\s*(?P<name>[A-Za-z_-]+)\s+(?P<arg>[^>]*?)\s*>\}\}")
ANY_SHORTCODE = re.compile(r"\{\{[<%]")
_FRONT_MATTER = re.compile(r"\A---\s*\n(?P<yaml>.*?\n)---\s*\n", re.DOTALL)
_MAX_INCLUDE_DEPTH = 10


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(front matter as a dict, body) of a Markdown document."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    meta = yaml.safe_load(match.group("yaml")) or {}
    if not isinstance(meta, dict):
        raise UserError("the report's front matter is not a YAML mapping")
    return meta, text[match.end():]


def lookup(tree: Mapping[str, Any], dotted: str) -> Any:
    """tree["a"]["b"] for "a.b"; KeyError naming the path when absent."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def _scalar(value: Any, name: str) -> str:
    if isinstance(value, Mapping | list | tuple):
        raise UserError(f"shortcode {name!r} names a section, not a value")
    return "" if value is None else str(value)


def resolve_shortcodes(text: str, base_dir: Path, variables: Mapping[str, Any],
                       meta: Mapping[str, Any], _depth: int = 0) -> str:
    """Replace include, var and meta shortcodes (includes recursively, relative to the
    including file's folder)."""
    if _depth > _MAX_INCLUDE_DEPTH:
        raise UserError("includes nested too deeply (a cycle?)")

    def replace(match: re.Match[str]) -> str:
        kind, arg = match.group("name"), match.group("arg").strip().strip('"').strip("'")
        if kind == "include":
            path = (base_dir / arg).resolve()
            if not path.is_file():
                raise UserError(f"include not found: {arg} (from {base_dir})")
            included = path.read_text(encoding="utf-8")
            _, body = split_front_matter(included)
            return resolve_shortcodes(body, path.parent, variables, meta, _depth + 1)
        if kind == "var":
            try:
                return _scalar(lookup(variables, arg), arg)
            except KeyError:
                raise UserError(f"report variable not defined: {arg}") from None
        if kind == "meta":
            try:
                return _scalar(lookup(meta, arg), arg)
            except KeyError:
                raise UserError(f"report metadata not defined: {arg}") from None
        raise UserError(f"unsupported shortcode {kind!r} in the report source")

    out = SHORTCODE.sub(replace, text)
    if _depth == 0:
        leftover = ANY_SHORTCODE.search(out)
        if leftover:
            snippet = out[leftover.start():leftover.start() + 60].splitlines()[0]
            raise UserError(f"unresolved shortcode in the report: {snippet!r}")
    return out


def resolve_document(source: Path, variables: Mapping[str, Any],
                     overrides: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """Front matter (shortcodes in its strings resolved, `overrides` applied) and the
    body with every shortcode resolved."""
    meta, body = split_front_matter(Path(source).read_text(encoding="utf-8"))

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return resolve_shortcodes(node, Path(source).parent, variables, {})
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    meta = walk(meta)
    meta.update(dict(overrides or {}))
    body = resolve_shortcodes(body, Path(source).parent, variables, meta)
    return meta, body


def join_front_matter(meta: Mapping[str, Any], body: str) -> str:
    dumped = yaml.safe_dump(dict(meta), sort_keys=False, allow_unicode=True)
    return f"---\n{dumped}---\n\n{body}"


# ---------------------------------------------------------------------------------------
# Engines


@dataclass(frozen=True)
class Renderer:
    """An available engine: `name` is "quarto" or "pandoc", `label` names it in the
    report (with its version)."""

    name: str
    executable: str
    version: str

    @property
    def label(self) -> str:
        if self.name == "quarto":
            return f"Quarto {self.version}"
        return f"pandoc {self.version} (fallback renderer: Quarto is not on PATH)"


def _version(executable: str) -> str:
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True,
                             timeout=60, check=False).stdout.strip()
    except OSError:
        return "unknown"
    first = out.splitlines()[0] if out else "unknown"
    return first.split()[-1] if first.split() else first


def pandoc_path() -> str:
    """The pandoc of the pypandoc-binary wheel, else one on PATH."""
    try:
        import pypandoc

        path = pypandoc.get_pandoc_path()
        if path:
            return str(path)
    except (ImportError, OSError):
        pass
    found = shutil.which("pandoc")
    if not found:
        raise UserError("pandoc not found: install pypandoc-binary (or Quarto)")
    return found


def choose_renderer(preference: str = "auto") -> Renderer:
    """Quarto when on PATH (or required by `preference="quarto"`), else pandoc."""
    if preference not in ("auto", "quarto", "pandoc"):
        raise UserError(f"renderer must be auto, quarto or pandoc, not {preference!r}")
    quarto = shutil.which("quarto") if preference in ("auto", "quarto") else None
    if quarto:
        return Renderer("quarto", quarto, _version(quarto))
    if preference == "quarto":
        raise UserError("renderer quarto requested but quarto is not on PATH")
    path = pandoc_path()
    version = _version(path)
    if version.split(".")[0].isdigit() and int(version.split(".")[0]) < 3:
        raise UserError(f"pandoc {version} is too old: --embed-resources needs pandoc 3")
    return Renderer("pandoc", path, version)


def _run(command: list[str], cwd: Path, log: Path | None) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                            timeout=600, check=False)
    if log is not None:
        with log.open("a", encoding="utf-8") as fh:
            fh.write("$ " + " ".join(command) + "\n" + result.stdout + result.stderr)
    if result.returncode != 0:
        raise UserError(f"{Path(command[0]).name} failed ({result.returncode}):\n"
                        f"{(result.stderr or result.stdout)[-3000:]}")


def render(renderer: Renderer, resolved: Path, out_html: Path, *,
           bibliography: Path | None = None, css: Sequence[Path] = (),
           log: Path | None = None) -> Path:
    """Render the resolved document (its folder holds the figures it links) into one
    self-contained HTML file."""
    resolved = Path(resolved)
    work = resolved.parent
    out_html = Path(out_html)
    if renderer.name == "quarto":
        # Quarto writes next to its input; the front matter carries embed-resources.
        target = work / (resolved.stem + ".html")
        _run([renderer.executable, "render", resolved.name, "--to", "html",
              "--output", target.name], work, log)
    else:
        target = work / (resolved.stem + ".html")
        command = [renderer.executable, resolved.name, "--from", "markdown",
                   "--to", "html5", "--standalone", "--embed-resources",
                   "--toc", "--toc-depth=2", "--number-sections",
                   "--output", target.name]
        if bibliography is not None:
            command += ["--citeproc", f"--bibliography={Path(bibliography).name}"]
        command += [f"--css={Path(c).name}" for c in css]
        _run(command, work, log)
    if not target.is_file():
        raise UserError(f"{renderer.name} wrote no {target.name}")
    out_html.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(target, out_html)
    return out_html


__all__ = [
    "Renderer", "choose_renderer", "join_front_matter", "lookup", "pandoc_path", "render",
    "resolve_document", "resolve_shortcodes", "split_front_matter",
]
