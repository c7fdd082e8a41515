"""Jinja2 rendering of notices: one environment, templates shipped in the package.

Rendering is pure (same notice, same text). HTML templates autoescape, so a contact's
name or message can never inject markup; StrictUndefined makes a typo in a template an
error in the tests rather than a blank in someone's inbox.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

# What a mail, SMS or push app turns into a link by itself: a scheme ("https://") or a dotted host name
# ("evil.example", "www.x.co", in any script, with the full stops IDN allows) or address ("10.0.0.1"); a
# single letter after a dot ("J.R. Smith") is not one.
_DOTS = ".\u3002\uff0e\uff61"
_LINKISH = re.compile(rf"\b[^\W\d_][\w+.-]*://|(?:[\w-]+[{_DOTS}])+(?:[^\W\d_][\w-]+|\d+\b)")


def shown_name(name: str) -> str:
    """A contact's name as a notice shows it, defanged: "https[:]//evil[.]example" for "https://evil.example".

    The name is whatever a website's visitor typed, printed in a notice's subject, SMS and push text next to
    the notice's own links; left as typed, a name holding a host name is a link the agent's phone offers to
    open, one that looks like ours (helper 169). Its words stay readable; the contact's message is quoted
    (marked as theirs) and not changed."""
    return _LINKISH.sub(_defanged, name)


def _defanged(match: re.Match[str]) -> str:
    text = match.group().replace("://", "[:]//")
    return "".join(f"[{c}]" if c in _DOTS else c for c in text)


_ENV = Environment(
    loader=PackageLoader("leadflow_notifier", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    undefined=StrictUndefined,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,  # shipped with the package: no stat of the template's file at every render
)
_ENV.filters["shown_name"] = shown_name


def render(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)
