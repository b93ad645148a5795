"""Local emulators of EspoCRM and xAI (product, not test scaffolding): `docsync sandbox serve`, `docsync demo`."""
