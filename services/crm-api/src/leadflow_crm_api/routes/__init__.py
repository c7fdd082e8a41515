"""Route groups of crm-api, one module each; bootstrap includes them."""
