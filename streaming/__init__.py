"""The live scoring service: Kafka consumer group (loop), checkpoints (state), sinks, dead letters,
replay, local broker, Prometheus metrics, benchmark and demo. Imports flow models <- fraud <- streaming."""
