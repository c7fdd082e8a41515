"""Event and command contracts, one module per topic family."""
