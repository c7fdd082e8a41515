"""crm-api's use cases: what a caller may do, called by the JSON routes and the web pages alike,
so no rule lives twice. They take a verified `Principal` and raise `errors.CrmApiError`."""
