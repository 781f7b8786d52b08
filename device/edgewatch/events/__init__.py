"""Events waiting to leave the device: the durable outbox between camera and broker."""
