"""Stand-ins for the stores the connectors call (`shared.stores`): local stack and tests only."""
