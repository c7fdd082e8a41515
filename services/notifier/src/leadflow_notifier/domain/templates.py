"""Jinja2 rendering of notices: one environment, templates shipped in the package.

Rendering is pure (same notice, same text). HTML templates autoescape, so a contact's
name or message can never inject markup; StrictUndefined makes a typo in a template an
error in the tests rather than a blank in someone's inbox.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

# What a mail, SMS or push app turns into a link by itself: a scheme ("https://") or a dotted host name
# ("evil.example", "www.x.co", in any script, with the full stops IDN allows) or address ("10.0.0.1"); a
# single letter after the last dot ("J.R. Smith") is not one. Read a word at a time, each in one pass: a regex
# over whole names backtracked quadratically ("A.A.A...": 0.8 ms a name, 16 s for a digest of 10,000; helper 176).
_DOTS = ".\u3002\uff0e\uff61"
_WORD = re.compile(r"\S+")
_SPLIT = re.compile(f"[{_DOTS}]")
_LABEL = re.compile(r"[^\W\d_][\w-]|\d+(?!\w)")  # what begins a label a linker takes: anchored, one pass


def shown_name(name: str) -> str:
    """A contact's name as a notice shows it, defanged: "https[:]//evil[.]example" for "https://evil.example".

    The name is whatever a website's visitor typed, printed in a notice's subject, SMS and push text next to
    the notice's own links; left as typed, a name holding a host name is a link the agent's phone offers to
    open, one that looks like ours (helper 169). Its words stay readable; the contact's message is quoted
    (marked as theirs) and not changed."""
    return _WORD.sub(_defanged, name)


def _defanged(match: re.Match[str]) -> str:
    word = match.group()
    if "://" not in word and not _hostish(word):
        return word
    return "".join(f"[{c}]" if c in _DOTS else c for c in word.replace("://", "[:]//"))


def _hostish(word: str) -> bool:
    """Whether `word` holds a dotted name an app would link: a full stop after one of its characters and before a
    label of two or more characters beginning with a letter, or of digits only ("x.co", "10.0.0.1"; not "J.R.")."""
    labels = _SPLIT.split(word.strip(".,;:!?()[]{}<>\"'"))
    return any(before and _LABEL.match(label) for before, label in itertools.pairwise(labels))


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
