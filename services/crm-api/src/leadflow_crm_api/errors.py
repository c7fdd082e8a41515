"""crm-api's errors, translated to RFC 9457 problem details only at the HTTP edge (problems.py).

CrmApiError
├── Unauthenticated   401  no, expired, mis-signed or foreign-audience bearer token
├── Forbidden         403  a valid caller asking outside its account or role
├── NotFound          404  no such lead in the caller's scope (also hides other tenants' leads)
├── LinkUnknown       404  an accept link that is not ours, or names no known offer
├── ClaimNotPossible  409  an accept by someone who holds no live offer (the offer ended, or never was)
├── LinkRefused       409  an accept link already used, or whose offer ended
├── VersionConflict   409  a change based on a version of a setting that another change replaced
├── InvalidRequest    422  well-formed but unusable input (e.g. a transfer to a realtor who did not accept)
└── Unavailable       503  a dependency (Kafka) did not take the action

Bodies are refused before any route by bodies.py (413, 422); malformed fields and cursors are
FastAPI's RequestValidationError (422 naming the field).
"""

from __future__ import annotations


class CrmApiError(Exception):
    status = 500
    slug = "internal"
    title = "Internal Server Error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Unauthenticated(CrmApiError):  # noqa: N818 (named for the HTTP status it maps to)
    status, slug, title = 401, "unauthenticated", "Unauthorized"


class Forbidden(CrmApiError):  # noqa: N818
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(CrmApiError):  # noqa: N818
    status, slug, title = 404, "not-found", "Not Found"


class ClaimNotPossible(CrmApiError):  # noqa: N818
    status, slug, title = 409, "claim-not-possible", "Conflict"


class LinkUnknown(CrmApiError):  # noqa: N818
    status, slug, title = 404, "offer-link-unknown", "Not Found"


class LinkRefused(CrmApiError):  # noqa: N818
    status, slug, title = 409, "offer-link-refused", "Conflict"


class VersionConflict(CrmApiError):  # noqa: N818
    status, slug, title = 409, "version-conflict", "Conflict"


class ContentTooLarge(CrmApiError):  # noqa: N818
    status, slug, title = 413, "content-too-large", "Content Too Large"


class InvalidRequest(CrmApiError):  # noqa: N818
    status, slug, title = 422, "invalid-request", "Unprocessable Content"


class TooManyRequests(CrmApiError):  # noqa: N818
    status, slug, title = 429, "too-many-requests", "Too Many Requests"


class Unavailable(CrmApiError):  # noqa: N818
    status, slug, title = 503, "unavailable", "Service Unavailable"
