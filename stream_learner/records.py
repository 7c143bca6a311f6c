"""The output records as the engine builds them: plain dicts, typed.

Each ``TypedDict`` here is the dict form of one pydantic contract in
:mod:`stream_learner.events` (:class:`~stream_learner.events.Prediction`,
:class:`~stream_learner.events.MetricsRecord`,
:class:`~stream_learner.events.DriftRecord`,
:class:`~stream_learner.events.DeadLetter`). The engine builds the dicts
themselves, which a sink encodes as they are; the pydantic models validate
them at the edges and in tests. ``tests/unit/test_records.py`` checks that each
pair names the same fields, so a field added to one and not the other fails.

A key that is :class:`~typing.NotRequired` here is one the builder leaves out
when it has nothing to say; its contract field has a default.

>>> record: DriftDict = {"type": "drift", "key": "default", "detector": "adwin", "at_event": 5, "concept": 1, "ts": 0.0}
>>> from stream_learner.events import DriftRecord
>>> DriftRecord.model_validate(record).at_event
5
"""

# No `from __future__ import annotations` here: TypedDict reads NotRequired[...] from the evaluated annotations
# (with string annotations, Python 3.11 counts every key as required).
from typing import Any, Literal, NotRequired, TypedDict, get_args

DeadLetterReason = Literal[
    "tombstone",  # a null record value (a Kafka tombstone)
    "empty",  # a record of zero bytes
    "too_large",  # a record over the size limit
    "invalid_json",
    "not_an_object",  # valid JSON, but not an object
    "invalid_event",
    "id_too_long",
    "key_too_long",
    "label_too_long",
    "invalid_label_json",
    "invalid_label",
    "unjoinable_label",  # a delayed label in a run that joins none
    "schema",  # contradicts what the key's model has learned
    "model_error",
    "too_many_keys",  # a new model key beyond the keys a worker may hold (--max-keys)
    "invalid_command",  # a control record that is not a well-formed command
    "unsigned_command",
    "bad_signature",  # a control command signed with another key, or altered
    "stale_command",  # a control command older than its time to live
]
"""Why a record became a dead letter: a fixed set (also the ``reason`` label of the dead-letter metric)."""
REASONS: tuple[str, ...] = get_args(DeadLetterReason)


class PredictionDict(TypedDict):
    """One prediction per valid input event (:class:`~stream_learner.events.Prediction`)."""

    id: str
    key: str
    prediction: Any  # a label: a bool, a number or a string; None before the model has learned a class
    proba: dict[Any, float] | None
    model_version: int
    concept: int
    ts: float


class ShadowPredictionDict(TypedDict):
    """A challenger's prediction, published beside the champion's where the run asks for them (:class:`~stream_learner.events.ShadowPrediction`)."""

    id: str
    key: str
    candidate: str  # the challenger that made it
    prediction: Any
    proba: dict[Any, float] | None
    model_version: int
    concept: int
    ts: float


class ForgettingDict(TypedDict):
    """Forgetting, backward transfer and the accuracy matrix (:class:`~stream_learner.events.ForgettingSummary`)."""

    average: float | None
    bwt: float | None
    average_accuracy: float | None
    average_mae: float | None
    metric: Literal["accuracy", "mae"]
    concepts: int
    columns: list[int]
    matrix: list[list[float | None]]


DelayedLabelState = Literal["received", "matched", "expired", "unmatched", "waiting", "pending"]
"""The keys of :class:`DelayedLabelCountsDict` (the ``state`` label of the delayed-label metric)."""


class DelayedLabelCountsDict(TypedDict):
    """What the delayed-label window has joined, expired and holds (:class:`~stream_learner.events.DelayedLabelCounts`)."""

    received: int
    matched: int
    expired: int
    unmatched: int
    waiting: int
    pending: int


class MetricsDict(TypedDict):
    """Prequential metrics of one model key (:class:`~stream_learner.events.MetricsRecord`)."""

    type: Literal["metrics"]
    key: str
    events: int
    labelled: int
    accuracy: float | None
    accuracy_window: float | None
    mae: float | None
    rmse: float | None
    concept: int
    concepts: int
    drifts: int
    forgetting: ForgettingDict
    ts: float
    delayed_labels: NotRequired[DelayedLabelCountsDict]  # only in a run that joins delayed labels
    failures: NotRequired[int]  # only once a model failure no event carries has happened
    candidate: NotRequired[str]  # only where the key has challengers: the candidate these are the metrics of
    champion: NotRequired[bool]  # with candidate: whether it is the champion (whose predictions are published)


class ReuseEvidenceDict(TypedDict):
    """The paired test by which a stored concept's model came back (:class:`~stream_learner.events.ReuseEvidence`)."""

    test: str  # "mcnemar_exact", "mcnemar_chi2" or "wilcoxon" (see stream_learner.evidence)
    statistic: float
    p_value: float  # two-sided
    n: int  # labelled events both models predicted
    alpha: float  # the level it passed (the run's alpha shared among the candidates and looks)
    live_error: float  # the replaced model's error over them
    stored_error: float  # the reinstated model's


class DriftDict(TypedDict):
    """A detected concept drift, an explicit task switch, or an earlier concept back (:class:`~stream_learner.events.DriftRecord`)."""

    type: Literal["drift"]
    key: str
    detector: str  # "recurring" where a stored concept's model came back
    at_event: int
    concept: int
    ts: float
    reused_concept: NotRequired[int]  # only where detector is "recurring": the earlier concept whose model is live again
    evidence: NotRequired[ReuseEvidenceDict]  # with reused_concept
    candidate: NotRequired[str]  # only where the key has challengers: the candidate that drifted
    champion: NotRequired[bool]  # with candidate


class FeatureScoreDict(TypedDict):
    """One feature that moved and how far (:class:`~stream_learner.events.FeatureScore`)."""

    name: str
    psi: float


class FeatureDriftDict(TypedDict):
    """The features' distribution moved (:class:`~stream_learner.events.FeatureDriftRecord`), labels or not."""

    type: Literal["feature_drift"]
    key: str
    features: list[FeatureScoreDict]  # the features that moved, highest statistic first
    statistic: Literal["psi"]
    at_event: int
    concept: int  # after any boundary the drift started
    ts: float
    candidate: NotRequired[str]  # only where the key has challengers: the candidate whose watch saw it
    champion: NotRequired[bool]  # with candidate


class PromotionEvidenceDict(TypedDict):
    """The paired test on which a challenger beat the champion (:class:`~stream_learner.events.PromotionEvidence`)."""

    window: int  # labelled events both predicted
    champion_error: float  # its error rate (classification) or mean absolute error (regression) over them
    challenger_error: float
    statistic: float
    p_value: float  # two-sided
    test: str  # "mcnemar_exact", "mcnemar_chi2" or "wilcoxon" (see stream_learner.evidence)


class PromotionDict(TypedDict):
    """A challenger replaced the champion of a key, or is recommended to (:class:`~stream_learner.events.PromotionRecord`)."""

    type: Literal["promotion"]
    key: str
    champion: str  # the candidate it replaces (or would replace)
    challenger: str  # the candidate promoted (or recommended)
    evidence: PromotionEvidenceDict
    at_event: int
    applied: bool  # False: auto-promotion is off, this is a recommendation
    ts: float


ControlStatus = Literal["applied", "refused", "duplicate"]


class ControlDict(TypedDict):
    """The engine's answer to an operator's command (:class:`~stream_learner.events.ControlAnswer`; see :mod:`stream_learner.control`)."""

    type: Literal["control"]
    key: str
    id: str  # the command's id
    action: str
    arg: str | int | None
    status: ControlStatus  # duplicate: a command with this id was applied before; nothing done
    reason: NotRequired[str]  # why it was refused
    version: NotRequired[int]  # a rollback applied: the snapshot version installed
    at_event: int  # the key's events before the command took effect
    ts: float


class OriginDict(TypedDict):
    """Where a record came from (:class:`~stream_learner.events.OriginModel`)."""

    topic: str
    partition: int
    offset: int


class DeadLetterDict(TypedDict):
    """A record that could not be used, why, and where it came from (:class:`~stream_learner.events.DeadLetter`)."""

    reason: DeadLetterReason
    error: str
    raw: str
    raw_bytes: NotRequired[int]  # with raw_sha256, only when raw is a prefix of a longer record
    raw_sha256: NotRequired[str]
    origin: OriginDict
    ts: float
