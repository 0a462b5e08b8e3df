"""``stacking``: a meta-learner fitted on held-out base-model outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from combiners._base import BaseCombiner
from combiners._explain import Explanation, l1_shares
from combiners._registry import import_object, register
from combiners._validation import (
    FloatArray,
    Task,
    available_outputs,
    check_features,
    fill_missing,
)
from combiners.errors import InvalidParameterError, StateError, TargetError

__all__ = ["Stacking"]


@register("stacking")
class Stacking(BaseCombiner):
    """Stacked generalisation: a meta-learner over the models' outputs (and optionally ``X``).

    The meta-learner's input for an event is its row of every model's outputs, flattened to
    ``n_models * n_outputs`` columns (plus the raw features ``X`` if ``passthrough``). Fit it
    on **held-out** predictions only, never on rows the base models were trained on: there the
    base models are overconfident (they have seen the answers), so the meta-learner would learn
    to trust them far more than it should on new events, and its weights would be biased by
    that leakage. Use a split the base models never saw (or out-of-fold predictions).

    The default meta-learner is ``LogisticRegression`` (classification; probabilities follow
    its ``classes_``, classes absent from the held-out ``y`` get probability 0) or ``Ridge``
    (regression). Both are evaluated with numpy from their ``coef_``/``intercept_``, so their
    state saves without pickle. ``meta`` may name another estimator by dotted path
    ``"package.module:Class"`` (with ``predict_proba`` for classification, ``predict`` for
    regression); such a combiner works but :func:`combiners.save_state` refuses it.

    Unavailable models' rows are replaced by the mean of the available models' outputs, since
    the meta-learner needs every column.

    Parameters
    ----------
    meta : str, optional
        Dotted path of the meta-learner class. Default: LogisticRegression or Ridge.
    meta_params : dict, optional
        Keyword arguments for the meta-learner (default ``{"max_iter": 1000}`` for
        LogisticRegression, ``{"alpha": 1.0}`` for Ridge).
    passthrough : bool, default False
        Append the raw features ``X`` ``(n_events, n_features)`` to the meta-learner's input.
    task : {"classification", "regression"}, optional

    Attributes
    ----------
    coef_ : ndarray of shape (n_coef_rows, n_meta_features)
        Built-in meta-learners only (``n_coef_rows`` is 1 for binary classification).
    intercept_ : ndarray of shape (n_coef_rows,)
    classes_ : ndarray of shape (n_seen_classes,)
        Class indices the meta-learner saw (classification).
    meta_ : estimator or None
        The fitted user-named meta-learner; None for the built-ins.

    Examples
    --------
    >>> import numpy as np
    >>> from combiners import get_combiner
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=40)
    >>> P = np.stack([y + 1.0, 2 * y])[:, :, None]  # two biased models
    >>> comb = get_combiner("stacking", meta_params={"alpha": 1e-9}).fit(P, y)
    >>> bool(np.allclose(comb.combine(P)[:, 0], y))
    True
    """

    _scalar_state = (*BaseCombiner._scalar_state, "n_features_in_")
    _array_state = ("coef_", "intercept_", "classes_")

    def __init__(
        self,
        *,
        meta: str | None = None,
        meta_params: dict[str, Any] | None = None,
        passthrough: bool = False,
        task: Task | None = None,
    ) -> None:
        self.meta = meta
        self.meta_params = meta_params
        self.passthrough = passthrough
        self.task = task

    def validate_params(self) -> None:
        super().validate_params()
        if self.meta is not None:
            self._import_meta()
        if self.meta_params is not None and not isinstance(self.meta_params, dict):
            raise InvalidParameterError(self._label, "meta_params", "a dict", self.meta_params)
        if not isinstance(self.passthrough, bool):
            raise InvalidParameterError(
                self._label, "passthrough", "True or False", self.passthrough
            )

    def _import_meta(self) -> Any:
        try:
            cls = import_object(str(self.meta))
        except (ImportError, AttributeError, ValueError) as exc:
            raise InvalidParameterError(
                self._label, "meta", "a dotted path 'package.module:Class'", self.meta
            ) from exc
        if not (isinstance(cls, type) and callable(getattr(cls, "fit", None))):
            raise InvalidParameterError(
                self._label, "meta", "an estimator class with fit", self.meta
            )
        return cls

    def _meta_class(self) -> Any:
        if self.meta is not None:
            return self._import_meta()
        from sklearn.linear_model import LogisticRegression, Ridge  # loaded only when fitting

        return LogisticRegression if self.task_ == "classification" else Ridge

    def _features(self, P: FloatArray, X: ArrayLike | None) -> FloatArray:
        Z = P.transpose(1, 0, 2).reshape(P.shape[1], P.shape[0] * P.shape[2])
        if self.passthrough:
            Z = np.hstack([Z, check_features(X, P.shape[1], self.n_features_in_)])
        return Z

    def fit(self, P: ArrayLike, y: ArrayLike, X: ArrayLike | None = None) -> Stacking:
        """Fit the meta-learner on held-out ``P`` ``(n_models, n_events, n_outputs)``, ``y``."""
        P_arr, y_arr = self._fit_inputs(P, y)
        self.n_features_in_ = None
        if self.passthrough:
            self.n_features_in_ = check_features(X, P_arr.shape[1], None).shape[1]
        Z = self._features(P_arr, X)
        from sklearn.linear_model import LogisticRegression, Ridge

        cls = self._meta_class()
        builtin = cls in (LogisticRegression, Ridge)
        params = dict(self.meta_params or {})
        if cls is LogisticRegression:
            params.setdefault("max_iter", 1000)
        if self.task_ == "classification" and np.unique(y_arr).size < 2:
            raise TargetError(
                self._label, "at least 2 distinct classes to fit a meta-learner", y_arr[:5]
            )
        try:
            model = cls(**params).fit(Z, y_arr)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(
                self._label, "meta_params", f"valid for {cls.__name__}", params
            ) from exc
        self.meta_ = None if builtin else model
        self.coef_ = (
            np.atleast_2d(np.asarray(model.coef_, dtype=np.float64))
            if builtin
            else np.zeros((0, 0))
        )
        self.intercept_ = (
            np.atleast_1d(np.asarray(model.intercept_, dtype=np.float64))
            if builtin
            else np.zeros(0)
        )
        classes = getattr(model, "classes_", np.arange(self.n_outputs_))
        self.classes_ = (
            np.asarray(classes, dtype=np.int64)
            if self.task_ == "classification"
            else np.zeros(0, np.int64)
        )
        return self

    def combine(
        self, P: ArrayLike, X: ArrayLike | None = None, available: ArrayLike | None = None
    ) -> FloatArray:
        """Return ``(n_events, n_outputs)``: meta-learner probabilities or values."""
        P_arr, mask = self._combine_inputs(P, available)
        if mask is not None:
            available_outputs(P_arr, mask)
            P_arr = fill_missing(P_arr, mask)
        else:
            available_outputs(P_arr, None)
        Z = self._features(P_arr, X)
        if self.task_ == "regression":
            if self.meta_ is not None:
                pred = np.asarray(self.meta_.predict(Z), dtype=np.float64)
                return pred.reshape(Z.shape[0], self.n_outputs_)
            out: FloatArray = Z @ self.coef_.T + self.intercept_
            return out
        proba = (
            np.asarray(self.meta_.predict_proba(Z), dtype=np.float64)
            if self.meta_ is not None
            else _logistic_proba(Z @ self.coef_.T + self.intercept_)
        )
        full = np.zeros((Z.shape[0], self.n_outputs_))
        full[:, self.classes_] = proba
        return full

    def model_weights(self) -> FloatArray | None:
        """Each model's share of the meta-learner's absolute coefficients on its output
        columns, ``(n_models,)`` summing to 1 (passthrough features left out); None for a
        user-named meta-learner."""
        self._check_fitted("model_weights")
        if self.meta_ is not None:
            return None
        return l1_shares(self.coef_, self.n_models_, self.n_outputs_)

    def explain(
        self, P: ArrayLike, X: ArrayLike | None = None, available: ArrayLike | None = None
    ) -> Explanation | None:
        """The meta-learner's terms: model ``i`` contributes ``coef[:, i-block] @ P_i``.

        Regression: the terms and the base (intercept, passthrough features' terms) add up to
        the output. Classification: they are logits (``link="softmax"``); a binary
        meta-learner's one logit belongs to its second class, the first class's column is 0.
        An unavailable model's stand-in (the mean of the others) is counted in the base.
        None for a user-named meta-learner.
        """
        P_arr, mask = self._combine_inputs(P, available, "explain")
        if self.meta_ is not None:
            return None
        available_outputs(P_arr, mask)
        filled = fill_missing(P_arr, mask)
        n_models, n_events, n_outputs = filled.shape
        width = n_models * n_outputs
        coef = self.coef_[:, :width].reshape(self.coef_.shape[0], n_models, n_outputs)
        terms = np.einsum("mej,rmj->mer", filled, coef)  # (n_models, n_events, n_coef_rows)
        rest = np.broadcast_to(self.intercept_, (n_events, self.coef_.shape[0])).copy()
        if self.passthrough:
            rest += check_features(X, n_events, self.n_features_in_) @ self.coef_[:, width:].T
        if mask is not None:
            rest += terms[~mask].sum(axis=0)
            terms[~mask] = 0.0
        if self.task_ == "regression":
            return Explanation(terms, rest)
        rows = self.classes_[1:] if self.coef_.shape[0] == 1 else self.classes_
        contributions = np.zeros((n_models, n_events, self.n_outputs_))
        contributions[:, :, rows] = terms
        base = np.full((n_events, self.n_outputs_), -np.inf)
        base[:, self.classes_] = 0.0
        base[:, rows] = rest
        return Explanation(contributions, base, "softmax")

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if getattr(self, "meta_", None) is not None:
            raise StateError(
                self._label,
                f"cannot save a user-named meta-learner ({self.meta}) without pickle; "
                "use the built-in LogisticRegression/Ridge or persist it yourself",
            )
        return super()._get_state()

    def _set_state(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super()._set_state(scalars, arrays)
        self.meta_ = None


def _logistic_proba(decision: FloatArray) -> FloatArray:
    """LogisticRegression.predict_proba from its decision values ``(n_events, n_coef_rows)``."""
    if decision.shape[1] == 1:  # binary: one logit for the second class
        p1 = 1.0 / (1.0 + np.exp(-decision[:, 0]))
        return np.column_stack([1.0 - p1, p1])
    shifted = decision - decision.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: FloatArray = exp / exp.sum(axis=1, keepdims=True)
    return out
