"""Learner adapters, one per model family, behind :class:`Learner`."""

from stream_learner.learners.base import Learner, LearnerSpec
from stream_learner.learners.factory import build_learner
from stream_learner.learners.river import RiverLearner

__all__ = ["Learner", "LearnerSpec", "RiverLearner", "build_learner"]
