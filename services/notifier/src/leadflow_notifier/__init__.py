"""leadflow notifier: tells agents and brokers about routing decisions by email, SMS and push."""
