"""Kafka adapters without faust (aiokafka clients): the connection settings, the topic
catalog, start-up checks and topic creation, the outbox producer, the profile catalogs and
the local-state check."""
