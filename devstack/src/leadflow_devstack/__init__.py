"""Runs leadflow on one machine without Docker: embedded Kafka (Tansu), MongoDB-wire (nx-27017)
and SMTP servers, the four services, and sample leads. The tests use the same launchers."""
