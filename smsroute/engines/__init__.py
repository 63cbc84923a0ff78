"""The two engines that drive the processing core: embedded (one machine, SQLite) and Kafka
(scale-out). Each holds all of its engine and nothing else; the core imports neither."""
