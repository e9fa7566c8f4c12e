"""The detector ensemble: unsupervised detectors + optional supervised head, fused to one score.

    ens = Ensemble(unsupervised=("iforest", "ecod", "copod", "hbos", "autoencoder"),
                   supervised="lightgbm", combine="auto", seed=0).fit(X, y)
    ens.decision_function(X)   # final score in [0, 1], higher = more suspicious
    ens.detector_scores(X)     # DataFrame: one normalised [0, 1] column per detector (+ "supervised")
    ens.explain(X, top=3)      # list of reason lists, e.g. ["feature:amount high (512 vs p99 180)", "detector:ecod 0.99"]

Fit:
* ``X``: a DataFrame of numeric features (the column names are kept; scoring selects them by name,
  extra columns are ignored, missing ones raise SchemaError). NaN/inf are imputed with the training
  median of the column.
* ``y``: None, or one label per row with NaN or -1 for unknown. **Only labels that respect the
  feedback delay may be passed** (the ensemble has no clock; ``fraud.training`` selects them).
  When ``supervised`` is set and the known labels hold at least one fraud and one genuine row, the
  supervised head is trained on the labelled rows; otherwise the ensemble falls back to
  unsupervised scoring with a warning (``warnings.warn``, UserWarning).
* The unsupervised detectors are trained on all rows of X (labelled or not), subsampled to
  ``max_train_rows`` (seeded).

Fusion: each detector's raw score is rank-normalised against its own training-score distribution
(``fusion.RankNormalizer``, so it lies in [0, 1]); then ``combine``:

* ``"auto"`` (default): ``"stack"`` when the supervised head is trained, else ``"mean"``.
* ``"stack"``: the head sees the features plus the normalised unsupervised scores; its probability is the score.
* ``"mean"`` / ``"max"``: mean / max of the normalised scores (the supervised head's normalised
  probability is one more input when it is trained).
* ``"logistic"``: a non-negative logistic combiner fitted on the labelled rows over the normalised
  unsupervised scores (+ the supervised head's out-of-fold normalised probability).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from fraud._blas import single_threaded_blas
from fraud.detectors.fusion import RankNormalizer, make_combiner
from fraud.detectors.override import taken
from fraud.detectors.reasons import FeatureProfile, build_reasons
from fraud.detectors.supervised import SUPERVISED, SupervisedHead, labelled_mask
from fraud.detectors.unsupervised import UNSUPERVISED, FastECOD, make_detector
from fraud.errors import ConfigError, NotFittedError, SchemaError

COMBINES = ("auto", "stack", "mean", "max", "logistic")


class Ensemble(BaseEstimator):
    #: ``explain(X, rows=...)`` explains rows of ``X``, from the components ``decision_function(X)`` computed
    explains_rows = True
    #: a decision on at most this many rows keeps its components for ``explain(X, rows=...)`` (a stream poll)
    reuse_rows = 512

    def __init__(self, unsupervised=UNSUPERVISED, supervised: str | None = "lightgbm", combine: str = "auto",
                 contamination: float = 0.01, max_train_rows: int | None = 200_000, detector_params=None,
                 supervised_params=None, seed: int = 0):
        self.unsupervised = unsupervised
        self.supervised = supervised
        self.combine = combine
        self.contamination = contamination
        self.max_train_rows = max_train_rows
        self.detector_params = detector_params
        self.supervised_params = supervised_params
        self.seed = seed

    # ------------------------------------------------------------------ helpers
    def _check_params(self) -> None:
        for name in self.unsupervised:
            if name not in UNSUPERVISED:
                raise ConfigError(f"unknown unsupervised detector {name!r}; choose from {', '.join(UNSUPERVISED)}")
        if self.supervised is not None and self.supervised not in SUPERVISED:
            raise ConfigError(f"unknown supervised head {self.supervised!r}; choose from {', '.join(SUPERVISED)} or None")
        if self.combine not in COMBINES:
            raise ConfigError(f"unknown combine {self.combine!r}; choose from {', '.join(COMBINES)}")
        if not self.unsupervised and self.supervised is None:
            raise ConfigError("Ensemble needs at least one detector (unsupervised or supervised)")

    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_"):
            raise NotFittedError("Ensemble is not fitted; call fit(X, y) first")

    def _raw_matrix(self, X) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            if hasattr(self, "feature_names_"):
                missing = [c for c in self.feature_names_ if c not in X.columns]
                if missing:
                    raise SchemaError(f"Ensemble: input lacks feature column(s) {', '.join(map(repr, missing))} "
                                      f"that the model was trained on")
                X = X[self.feature_names_]
            bad = [c for c in X.columns if not (pd.api.types.is_numeric_dtype(X[c].dtype)
                                                or pd.api.types.is_bool_dtype(X[c].dtype))]
            if bad:
                raise SchemaError(f"Ensemble: feature column(s) {', '.join(map(repr, bad))} are not numeric")
            return X.to_numpy(dtype=np.float64, na_value=np.nan)
        A = np.asarray(X, dtype=np.float64)
        if A.ndim != 2:
            raise SchemaError(f"Ensemble: X must be 2-D, got shape {A.shape}")
        if hasattr(self, "feature_names_") and A.shape[1] != len(self.feature_names_):
            raise SchemaError(f"Ensemble: X has {A.shape[1]} columns, the model was trained on {len(self.feature_names_)}")
        return A

    def _impute(self, A: np.ndarray) -> np.ndarray:
        A = np.array(A, dtype=np.float64, copy=True)
        bad = ~np.isfinite(A)
        if bad.any():
            A[bad] = np.broadcast_to(self.medians_, A.shape)[bad]
        return A

    def _matrix(self, X) -> np.ndarray:
        return self._impute(self._raw_matrix(X))

    def _unsup_ranks(self, A: np.ndarray) -> np.ndarray:
        R = np.empty((len(A), len(self.detectors_)), dtype=np.float64)
        shared = None  # ECOD and COPOD fitted on the same rows: one ECDF lookup for both
        for k, (name, det) in enumerate(self.detectors_.items()):
            if name in ("ecod", "copod") and getattr(self, "ecdf_shared_", False):
                shared = shared if shared is not None else det.tails(A)
                raw = det.score_from_tails(*shared)
            else:
                raw = det.decision_function(A)
            R[:, k] = self.normalizers_[name].transform(raw)
        return R

    def _stack(self, A: np.ndarray, R: np.ndarray) -> np.ndarray:
        return np.hstack([A, R]) if self.stacked_ else A

    def _components(self, A: np.ndarray):
        """(unsupervised ranks, supervised probability or None, component matrix for the combiner)."""
        with single_threaded_blas():
            R = self._unsup_ranks(A)
            if self.supervised_ is None:
                return R, None, R
            p = self.supervised_.decision_function(self._stack(A, R))
            comps = np.hstack([R, self.normalizers_["supervised"].transform(p)[:, None]])
            return R, p, comps

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, progress=None) -> "Ensemble":
        """Fit on features ``X`` and optional delay-respecting labels ``y`` (NaN / -1 = unknown).

        ``progress``: optional callable(str) told about each step (for CLI progress displays).
        """
        self._check_params()
        say = progress or (lambda msg: None)
        if isinstance(X, pd.DataFrame):
            names = [str(c) for c in X.columns]
        else:
            names = [f"f{j}" for j in range(np.asarray(X).shape[1])]
        A = self._raw_matrix(X)
        if len(A) < 2:
            raise ConfigError(f"Ensemble.fit needs at least 2 rows, got {len(A)}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(np.where(np.isfinite(A), A, np.nan), axis=0)
        self.medians_ = np.where(np.isfinite(med), med, 0.0)
        A = self._impute(A)
        self.feature_names_ = names
        self.n_features_in_ = A.shape[1]
        rng = np.random.default_rng(self.seed)
        if self.max_train_rows is not None and len(A) > self.max_train_rows:
            Xu = A[np.sort(rng.choice(len(A), size=self.max_train_rows, replace=False))]
        else:
            Xu = A

        # unsupervised detectors + their normalisers
        params = dict(self.detector_params or {})
        self.detectors_, self.normalizers_ = {}, {}
        self.ecdf_shared_ = False
        for name in self.unsupervised:
            say(f"fitting {name} on {len(Xu)} rows")
            det = make_detector(name, seed=self.seed, contamination=0.1, **params.get(name, {}))
            if name == "copod" and "ecod" in self.detectors_:
                det.fit(Xu)
                # same training values: share the arrays so that a pickle holds them once
                det.values_, det.cumcounts_ = self.detectors_["ecod"].values_, self.detectors_["ecod"].cumcounts_
                self.ecdf_shared_ = True
            else:
                det.fit(Xu)
            self.detectors_[name] = det
            self.normalizers_[name] = RankNormalizer().fit(det.decision_scores_)
        self.profile_ = FeatureProfile().fit(Xu, names)
        self.tails_ = self.detectors_.get("ecod")
        if self.tails_ is None:
            self.tails_ = FastECOD(max_rows=50_000, seed=self.seed).fit(Xu)

        # supervised head on the labelled rows
        self.supervised_ = None
        self.stacked_ = False
        self.n_labelled_, self.n_fraud_labelled_ = 0, 0
        m = np.zeros(len(A), dtype=bool)
        if y is not None:
            yy = np.asarray(y, dtype=np.float64).ravel()
            if len(yy) != len(A):
                raise ConfigError(f"Ensemble.fit: {len(A)} rows of X but {len(yy)} labels")
            m = labelled_mask(yy)
            self.n_labelled_ = int(m.sum())
            self.n_fraud_labelled_ = int((yy[m] == 1).sum())
        combine = self.combine
        if combine == "stack" and self.supervised is None:
            raise ConfigError("combine='stack' needs a supervised head (supervised='lightgbm' or 'hgb')")
        usable = y is not None and 0 < self.n_fraud_labelled_ < self.n_labelled_
        if not usable and (self.supervised is not None or combine in ("stack", "logistic")):
            warnings.warn(
                f"no usable labels ({self.n_fraud_labelled_} fraud among {self.n_labelled_} labelled rows): "
                "falling back to unsupervised scoring (combine='mean')", UserWarning, stacklevel=2)
            combine = "mean"
            if not self.detectors_:
                raise ConfigError("no usable labels and no unsupervised detector: nothing to fit")
        if combine == "auto":
            combine = "stack" if self.supervised is not None else "mean"
        if self.supervised is not None and usable:
            self.stacked_ = combine == "stack" and bool(self.detectors_)
            A_lab = A[m]
            y_lab = np.asarray(y, dtype=np.float64).ravel()[m]
            Z_lab = self._stack(A_lab, self._unsup_ranks(A_lab)) if self.stacked_ else A_lab
            say(f"fitting supervised head ({self.supervised}) on {len(A_lab)} labelled rows")
            head = SupervisedHead(kind=self.supervised, seed=self.seed, **(self.supervised_params or {}))
            self.supervised_ = head.fit(Z_lab, y_lab)
            Z_u = self._stack(Xu, self._unsup_ranks(Xu)) if self.stacked_ else Xu
            self.normalizers_["supervised"] = RankNormalizer().fit(head.decision_function(Z_u))

        self.combine_ = combine
        self.component_names_ = list(self.detectors_) + (["supervised"] if self.supervised_ is not None else [])
        if combine in ("mean", "max"):
            self.combiner_ = make_combiner(combine).fit(np.zeros((1, len(self.component_names_))))
        elif combine == "logistic":
            say("fitting logistic combiner")
            A_lab = A[m]
            y_lab = np.asarray(y, dtype=np.float64).ravel()[m].astype(int)
            R_lab = self._unsup_ranks(A_lab)
            if self.supervised_ is not None:
                oof = self._out_of_fold(A_lab, R_lab, y_lab)
                R_lab = np.hstack([R_lab, self.normalizers_["supervised"].transform(oof)[:, None]])
            self.combiner_ = make_combiner("logistic", seed=self.seed).fit(R_lab, y_lab)
        else:
            self.combiner_ = None
        say("scoring the training rows")
        self.decision_scores_ = self.decision_function(A)
        self.threshold_ = float(np.quantile(self.decision_scores_, 1.0 - self.contamination))
        return self

    def _out_of_fold(self, A_lab: np.ndarray, R_lab: np.ndarray, y_lab: np.ndarray, folds: int = 3) -> np.ndarray:
        """Supervised probabilities of the labelled rows, each from a head not trained on it
        (contiguous folds: rows are in time order)."""
        oof = np.empty(len(A_lab))
        bounds = np.linspace(0, len(A_lab), folds + 1).astype(int)
        for a, b in zip(bounds[:-1], bounds[1:]):
            train = np.r_[0:a, b:len(A_lab)]
            head = SupervisedHead(kind=self.supervised, seed=self.seed, **(self.supervised_params or {}))
            if len(np.unique(y_lab[train])) < 2:
                oof[a:b] = self.supervised_.decision_function(self._stack(A_lab[a:b], R_lab[a:b]))
                continue
            head.fit(self._stack(A_lab[train], R_lab[train]), y_lab[train])
            oof[a:b] = head.decision_function(self._stack(A_lab[a:b], R_lab[a:b]))
        return oof

    # ------------------------------------------------------------------ score
    def decision_function(self, X) -> np.ndarray:
        """Final score per row, in [0, 1]; higher = more suspicious."""
        self._check_fitted()
        A = self._matrix(X)
        if len(A) == 0:
            return np.empty(0)
        R, p, comps = self._components(A)
        if len(A) <= self.reuse_rows:  # one tuple, replaced whole: a reader sees one call's X and components
            self._last = (X, A, R, comps)
        if self.combine_ == "stack":
            return np.clip(p, 0.0, 1.0)
        with single_threaded_blas():
            return np.clip(self.combiner_.combine(comps), 0.0, 1.0)

    def predict(self, X) -> np.ndarray:
        """1 where the score reaches ``threshold_`` (the training ``1 - contamination`` quantile)."""
        return (self.decision_function(X) >= self.threshold_).astype(int)

    def detector_scores(self, X) -> pd.DataFrame:
        """Normalised [0, 1] score of every detector (and ``supervised``), one column each."""
        self._check_fitted()
        A = self._matrix(X)
        R, p, comps = self._components(A)
        index = X.index if isinstance(X, pd.DataFrame) else None
        return pd.DataFrame(comps, columns=self.component_names_, index=index)

    def __getstate__(self):
        d = dict(super().__getstate__())  # object.__getstate__ hands out the instance's own __dict__
        d.pop("_last", None)  # the last small decision's input and components: a scoring aid, never pickled
        return d

    def _explained(self, X, rows):
        """(matrix, unsupervised ranks, components) of the rows of ``X`` to explain (``rows`` None: all): taken
        from the last ``decision_function`` when it scored this very ``X`` (unchanged since), else computed."""
        last = self.__dict__.get("_last")
        if rows is not None and last is not None and last[0] is X:
            rows = np.asarray(rows, dtype=np.int64)
            return last[1][rows], last[2][rows], last[3][rows]
        A = self._matrix(taken(X, rows))
        if len(A) == 0:
            return A, None, None
        R, p, comps = self._components(A)
        return A, R, comps

    def explain(self, X, top: int = 3, top_detectors: int = 2, rows=None) -> list[list[str]]:
        """Reason codes per row: the ``top`` contributing features, then the ``top_detectors``
        detectors with the highest normalised scores (see ``fraud.detectors.reasons``).

        Feature contributions are the supervised head's path attributions when it is trained
        (``SupervisedHead.path_contributions``: per-split log-odds credit along each tree path, one
        tree descent per row; its top features agree with TreeSHAP's on most alerted rows, see
        ``fraud bench heads``, at ~1% of TreeSHAP's cost), else the per-feature ECOD tail
        outlyingness (-log of the tail probability). All rows are attributed in one vectorised pass.
        ``rows``: explain only these rows of ``X`` (the same as ``explain(X[rows])``); right after
        ``decision_function(X)`` on this ``X`` its detector components are reused, not computed again."""
        self._check_fitted()
        A, R, comps = self._explained(X, rows)
        if len(A) == 0:
            return []
        if self.supervised_ is not None:
            contrib = self.supervised_.path_contributions(self._stack(A, R))[:, :A.shape[1]]
        else:
            contrib = self.tails_.feature_outlyingness(A)
        return build_reasons(self.profile_, A, contrib, self.component_names_, comps, top=top,
                             top_detectors=top_detectors)
