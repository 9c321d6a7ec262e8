"""Publishing: pure encoding, the Kafka publisher, the outage spool and an in-memory emit."""
