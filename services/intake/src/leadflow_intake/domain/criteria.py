"""Routing criteria read from a provider's own fields (issue 15, decision 0057).

A provider's value that does not fit (a price that is text, a type we do not know by that name) is
left out, never a refused lead: the criteria help routing; the lead itself is what must arrive.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from leadflow_intake.domain.normalize import strip
from leadflow_shared.events.criteria import (
    MAX_PRICE,
    MAX_TAGS,
    LeadCriteria,
    LeadIntent,
    LeadPlace,
    PriceRange,
    PropertyType,
    Tag,
)

# Property types as listing sites and CRMs name them, matched on letters only ("Multi-Family" = "multifamily").
_PROPERTY_TYPES: Mapping[str, PropertyType] = {
    **dict.fromkeys(("singlefamily", "singlefamilyhome", "house", "sfr", "residential"), PropertyType.SINGLE_FAMILY),
    **dict.fromkeys(("condo", "condominium", "apartment", "coop"), PropertyType.CONDO),
    **dict.fromkeys(("townhouse", "townhome", "rowhouse"), PropertyType.TOWNHOUSE),
    **dict.fromkeys(("multifamily", "duplex", "triplex", "fourplex", "quadplex"), PropertyType.MULTI_FAMILY),
    **dict.fromkeys(("manufactured", "mobile", "mobilemanufactured", "mobilehome"), PropertyType.MANUFACTURED),
    **dict.fromkeys(("land", "lot", "lotsland", "lotland", "farm", "ranch"), PropertyType.LAND),
    **dict.fromkeys(("commercial", "office", "retail", "industrial"), PropertyType.COMMERCIAL),
}


def property_type(name: str | None) -> PropertyType | None:
    """A provider's property type by name; one we do not know is `other`, none given is None."""
    if not name or not strip(name):
        return None
    return _PROPERTY_TYPES.get(re.sub(r"[^a-z]", "", name.casefold()), PropertyType.OTHER)


def criteria_from(
    *,
    intent: LeadIntent | None = None,
    kind: str | None = None,
    price_min: object = None,
    price_max: object = None,
    place: Mapping[str, object] | None = None,
    tags: Iterable[object] = (),
    mls_number: object = None,
) -> LeadCriteria | None:
    """The criteria a provider's fields give, each part kept only if it is valid on its own (by the models' own
    rules: LeadCriteria's validation, and its normalization, can never refuse what is kept)."""
    parts: dict[str, Any] = {"intent": intent, "property_type": property_type(kind)}
    parts["price"] = _valid(PriceRange, {"min": _whole(price_min), "max": _whole(price_max)})
    parts["place"] = _valid(LeadPlace, {k: v for k, v in (place or {}).items() if isinstance(v, str) and strip(v)})
    parts["tags"] = [t for t in tags if _is_tag(t)][:MAX_TAGS]
    parts["mls_number"] = mls_number if _valid(LeadCriteria, {"mls_number": mls_number}) else None
    return LeadCriteria.model_validate(parts).normalized()


_TAG: TypeAdapter[str] = TypeAdapter(Tag)


def _is_tag(value: object) -> bool:
    """Whether `value` is a tag as LeadCriteria reads one (its trim, its length), so the criteria built of the tags
    kept always validate; a tag that is too long once lower-cased, `normalized` leaves out."""
    try:
        _TAG.validate_python(value, strict=True)
    except ValidationError:
        return False
    return True


def _whole(value: object) -> int | None:
    """A price as a whole number: 450000, 450000.0 or "450,000" / "$450,000"; anything else none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\$?\s*\d{1,3}(,\d{3})+|\$?\s*\d+", strip(value)):
        digits = re.sub(r"[^\d]", "", value)
        # Past MAX_PRICE's digits it cannot be a price; past 4,300 `int()` refuses it (helper 136: a 500).
        return int(digits) if len(digits) <= len(str(MAX_PRICE)) else None
    return None


def _valid(model: type[PriceRange] | type[LeadPlace] | type[LeadCriteria], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError:
        return None
