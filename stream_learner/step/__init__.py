"""The parts of the per-key learner step (:class:`~stream_learner.engine.KeyedLearner`), one job each.

* :mod:`~stream_learner.step.concepts`: which concept the stream is in, and
  what starts a new one (an explicit task, a drift, a new label).
* :mod:`~stream_learner.step.cadence`: when metrics, concept evaluations
  and snapshots are due.
* :mod:`~stream_learner.step.resume`: which events a restored learner has
  already learned, by source partition.
* :mod:`~stream_learner.step.dead_letters`: the dead letters the step itself
  makes (events the schema or the model refused, labels nothing can join).
* :mod:`~stream_learner.step.guarded`: the model with undo: a learn or a
  boundary that raises leaves it as it was before.
"""
