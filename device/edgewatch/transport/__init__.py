"""Getting events off the device: MQTT topics, the broker's PKI, the local broker."""
