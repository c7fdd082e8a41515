"""leadflow intake: validates and normalizes incoming leads and publishes LeadReceived."""
