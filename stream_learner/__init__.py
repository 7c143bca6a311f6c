"""stream-learner: continual / online learning over event streams.

The core (this package, except :mod:`stream_learner.app`) learns and
measures; it imports no Bytewax, Kafka or Redis. ``connectors`` moves
bytes, and :mod:`stream_learner.app` wires the two into a dataflow and
a CLI.
"""

__version__ = "0.1.0"
