"""Connectors move bytes: sources, sinks and snapshot stores.

They may import Bytewax, Kafka and Redis clients and the core's data
types, but never a learner or a strategy.
"""
