"""leadflow crm-api: the CRM views brokers and realtors work from, and their actions."""
