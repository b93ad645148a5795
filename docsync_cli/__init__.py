"""docsync: keep EspoCRM documents searchable in xAI Collections."""

__version__ = "0.1.0"
