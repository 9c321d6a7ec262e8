"""streamd: contact-centre event streaming daemon (O2G, Xima, Alvaria, Calabrio -> Kafka)."""

__version__ = "0.1.0"
