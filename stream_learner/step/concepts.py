"""Which concept a model key's stream is in, and what starts a new one.

Concepts are numbered from 0 in the order they start. Three things mark a
boundary:

* an explicit ``task`` on an event: each task keeps its own concept, so a
  recurring task returns to its column of the accuracy matrix; the first
  task names the concept the stream is in;
* a drift found by the error detector, which starts a new concept unless
  explicit tasks own the boundaries (then it is only counted);
* a label never seen before (``new_label_gap``; see
  :class:`~stream_learner.drift.NewLabelWatch`), a drift like the detector's.

The tracker only decides; the learner step takes the boundary (evaluates
the concept that ends, tells the model) and then :meth:`ConceptTracker.enter`\\ s it.

>>> tracker = ConceptTracker()
>>> tracker.task("a"), tracker.task("b")
(None, 1)
>>> tracker.enter(1); tracker.task("a"), tracker.drift()
(0, None)
>>> tracker.concept, tracker.concepts, tracker.drifts
(1, 2, 1)
"""

from __future__ import annotations

from typing import Any

from stream_learner.drift import NewLabelWatch

VERSION = 1


class ConceptTracker:
    """The current concept, how many there have been, the drifts counted, and each explicit task's concept."""

    def __init__(self, new_labels: NewLabelWatch | None = None) -> None:
        self.concept = 0
        self.concepts = 1
        self.drifts = 0
        self.tasks: dict[str | int, int] = {}
        self.new_labels = new_labels

    def task(self, task: str | int) -> int | None:
        """An event carries ``task``: the concept it starts, or ``None`` where the stream stays in the current one."""
        tasks = self.tasks
        if tasks.get(task) == self.concept:
            return None
        if not tasks:
            tasks[task] = self.concept  # the first task names the current concept
            return None
        return tasks.setdefault(task, self.concepts)

    def drift(self) -> int | None:
        """A drift (the detector's or a new label's), counted: the concept it starts, or ``None`` where explicit tasks own the boundaries."""
        self.drifts += 1
        return None if self.tasks else self.concepts

    def is_new_label(self, label: Any) -> bool:
        """Count one labelled event; whether its label marks a boundary (see :class:`~stream_learner.drift.NewLabelWatch`)."""
        return self.new_labels is not None and self.new_labels.update(label)

    def enter(self, concept: int) -> None:
        """The stream is in ``concept`` from here on."""
        self.concept = concept
        self.concepts = max(self.concepts, concept + 1)
        if self.new_labels is not None:
            self.new_labels.boundary()

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "concept": self.concept,
            "concepts": self.concepts,
            "drifts": self.drifts,
            "tasks": [[task, concept] for task, concept in self.tasks.items()],
            "new_labels": self.new_labels.state_dict() if self.new_labels is not None else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], new_labels: NewLabelWatch | None) -> ConceptTracker:
        """The concepts of ``state``, with the new-label watch this run asks for (see :meth:`KeyedLearner.from_state`)."""
        tracker = cls(new_labels)
        tracker.concept, tracker.concepts, tracker.drifts = state["concept"], state["concepts"], state["drifts"]
        tracker.tasks = {task: concept for task, concept in state["tasks"]}
        return tracker
