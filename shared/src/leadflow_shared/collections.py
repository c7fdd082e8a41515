"""MongoDB collection names: the one place they are spelled out.

All services share one database. The account configuration (docs/account-config.md) is written by
the seed loader and crm-api and read by every service; the others belong to the service named by
their prefix.
"""

from __future__ import annotations

from typing import Final

# Account configuration, read by several services.
ACCOUNTS: Final = "accounts"
AGENTS: Final = "agents"
STAFF: Final = "staff"  # admins and staff who are not agents (crm-api writes them; the notifier reaches them)
PUSH_DEVICES: Final = "push_devices"  # each user's devices for push (`_id` = `<user>/<device>`; crm-api writes)
NOTIFIER_PREFERENCES: Final = "notifier_preferences"  # each user's notification preferences (crm-api writes too)

# intake
INTAKE_REQUESTS: Final = "intake_requests"

# router
ROUTER_LEADS: Final = "router_leads"
ROUTER_OUTBOXES: Final = "router_outboxes"  # a batch of new leads' outboxes until published (decision 0068)
ROUTER_CONTACTS: Final = "router_contacts"
ROUTER_ROTATIONS: Final = "router_rotations"
ROUTER_CAPACITY: Final = "router_capacity"  # one document per lead and agent it counts against (caps)
ROUTER_ERASURES: Final = "router_erasures"

# notifier
NOTIFIER_DELIVERIES: Final = "notifier_deliveries"
NOTIFIER_DIGEST_ITEMS: Final = "notifier_digest_items"
NOTIFIER_ERASURES: Final = "notifier_erasures"  # one marker per erased lead (decision 0094)

# crm-api: the views' generation-0 names (odd generations add a suffix, decision 0045), and the rest
CRM_LEADS: Final = "crm_leads"
CRM_TIMELINE: Final = "crm_timeline"
CRM_META: Final = "crm_meta"
CRM_REBUILD_LOG: Final = "crm_rebuild_log"
CRM_LABELS: Final = "crm_labels"
CRM_OFFICE_TRANSFERS: Final = "crm_office_transfers"
CRM_LEAD_MOVES: Final = "crm_lead_moves"  # which office transfer holds a lead as being moved (one at a time)
CRM_INVITATIONS: Final = "crm_invitations"
CRM_INVITATION_EMAILS: Final = "crm_invitation_emails"  # one per invitation email sent, a day: the daily bound
CRM_TRANSFERS: Final = "crm_transfers"
CRM_USED_OFFER_LINKS: Final = "crm_used_offer_links"
CRM_SETTINGS_AUDIT: Final = "crm_settings_audit"  # one change of routing rules or of an availability
CRM_REMOVED_STAFF: Final = "crm_removed_staff"  # a staff member an office removed: its admin token no longer holds
CRM_SIGNED_OUT: Final = "crm_signed_out"  # a web session's token signed out, until the token's own expiry

# ops
OPS_REPLAYS: Final = "ops_replays"
