"""Where the faas-cli templates are: one copy, found from a checkout or an installed wheel.

The template's only copy lives in the repository at ``template/<lang>/``, where
``faas-cli template pull <repo>`` expects it. A wheel carries that same folder as package
data at ``faasflow/template_data/<lang>/`` (``pyproject.toml`` force-includes it at build
time; nothing is duplicated in the source tree). So the lookup order is:

1. a folder given explicitly (``faasflow new --template DIR``): either a template
   (holding ``template.yml``) or a templates folder holding ``<lang>/template.yml``, such
   as the ``./template`` that ``faas-cli template pull`` writes;
2. the package data of an installed wheel;
3. the source tree next to ``src/`` (a checkout, an editable install).
"""

from __future__ import annotations

from pathlib import Path

from faasflow.errors import ConfigurationError

__all__ = [
    "DEFAULT_LANG",
    "TEMPLATE_FILE",
    "TemplateNotFoundError",
    "available_languages",
    "find_template",
    "template_roots",
]

DEFAULT_LANG = "faas-flow-python"
TEMPLATE_FILE = "template.yml"
_PACKAGE = Path(__file__).resolve().parents[1]  # the faasflow package folder


class TemplateNotFoundError(ConfigurationError):
    """No template for the language was found; the message lists where it looked."""


def template_roots() -> list[Path]:
    """The folders that may hold ``<lang>/template.yml``, most specific first."""
    return [_PACKAGE / "template_data", _PACKAGE.parents[1] / "template"]


def find_template(lang: str = DEFAULT_LANG, explicit: Path | None = None) -> Path:
    """The folder of the template for ``lang`` (holding ``template.yml``).

    Args:
        lang: the template's language name, as in ``faas-cli new --lang``.
        explicit: a template folder or a templates folder to use instead of the
            packaged one.

    Raises:
        TemplateNotFoundError: no such template; the message lists where it looked.
    """
    if explicit is not None:
        candidates = [explicit, explicit / lang]
    else:
        candidates = [root / lang for root in template_roots()]
    for folder in candidates:
        if (folder / TEMPLATE_FILE).is_file():
            return folder
    looked = ", ".join(str(folder) for folder in candidates)
    known = ", ".join(available_languages(explicit)) or "none"
    raise TemplateNotFoundError(
        f"no template {lang!r} (looked in {looked}; templates found: {known})"
    )


def available_languages(explicit: Path | None = None) -> list[str]:
    """The template languages found where :func:`find_template` looks."""
    roots = [explicit] if explicit is not None else template_roots()
    found: set[str] = set()
    for root in roots:
        if (root / TEMPLATE_FILE).is_file():
            found.add(root.name)
        elif root.is_dir():
            found.update(p.parent.name for p in root.glob(f"*/{TEMPLATE_FILE}"))
    return sorted(found)

