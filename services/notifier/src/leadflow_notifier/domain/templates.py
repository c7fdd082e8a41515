"""Jinja2 rendering of notices: one environment, templates shipped in the package.

Rendering is pure (same notice, same text). HTML templates autoescape, so a contact's
name or message can never inject markup; StrictUndefined makes a typo in a template an
error in the tests rather than a blank in someone's inbox.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_ENV = Environment(
    loader=PackageLoader("leadflow_notifier", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    undefined=StrictUndefined,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,  # shipped with the package: no stat of the template's file at every render
)


def render(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)
