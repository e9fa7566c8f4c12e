"""MLflow tracking and model registry for the scoring bundle.

The whole :class:`fraud.bundle.ScoringBundle` is ONE MLflow pyfunc model version:

* the bundle is pickled (protocol 5; torch modules inside featurizers pickle with it) into the
  model's artifact ``artifacts/bundle.pkl``; the pyfunc ``python_model`` is a :class:`BundleModel`,
  whose ``load_context`` unpickles it (``model.unwrap_python_model().bundle``);
* :meth:`BundleModel.predict` takes canonical rows (validated, sorted by time) and scores them as a
  replay after the customer history the features need: the stream scorer's archive (model config
  ``archive`` or ``FRAUD_ARCHIVE``), its events before the first input row, replayed from the
  training-cutoff state (``history: warm``, what a scorer starts from) or from an empty one
  (``history: fresh``, what ``fraud score`` on the archive plus the rows computes); no archive: the warm
  state alone. Returns DataFrame[tx_id, score, is_alert, reasons] in time order; invalid rows raise
  :class:`fraud.errors.ValidationError`;
* the logged model is servable (``mlflow models serve -m models:/NAME@champion``): a signature and an
  input example, the project's source as code paths and its dependencies pinned at registration.

Verified before load: ``bundle.pkl`` is a pickle (unpickling runs code) and the artifact store may be
writable by others, so at registration its SHA-256 (and, with ``FRAUD_BUNDLE_KEY``, its HMAC-SHA256) and
a SHA-256 of the whole model folder (MLmodel, ``code/``, ``python_model.pkl``, ``artifacts/``, environment files:
all that ``mlflow.pyfunc.load_model`` reads, imports or unpickles) are recorded as tags of the model version and
of the run (the tracking database is the trusted side). ``load_bundle`` reads ``bundle.pkl`` directly (faster than
``mlflow.pyfunc.load_model``: ``fraud bench load``), compares the digests with the tags and unpickles only
those verified bytes; a mismatch or a missing tag raises :class:`fraud.errors.RegistryError`. A local
model folder loads only when its ``artifacts/bundle.pkl.hmac`` verifies, or with ``trust_local=True``.

Names: models are registered under ``name`` (default ``fraud-detector``); the first version gets the
alias ``champion``. ``resolve_alias`` is a single registry query (hot-reload polling). An unreachable
store raises :class:`fraud.errors.RegistryError` naming the URI.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import re
import socket
import tempfile
import warnings
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from fraud.errors import RegistryError
from fraud.schema import utc_timestamp

CHAMPION = "champion"
BUNDLE_ARTIFACT = "bundle.pkl"
HMAC_ARTIFACT = "bundle.pkl.hmac"  # a local folder's proof: hex HMAC-SHA256 of bundle.pkl with the key
TAG_SHA256 = "bundle_sha256"
TAG_HMAC = "bundle_hmac_sha256"
TAG_MODEL_TREE = "model_tree_sha256"  # every file of the model folder (what mlflow.pyfunc.load_model reads)
MODEL_TREE = "the model folder (MLmodel, code/, python_model.pkl, artifacts/, environment files)"
# MLflow's client writes this file into every download of a models:/ URI (runs:/RUN/model resolves to one), over
# whatever the store holds under that name: the downloaded name and version (null for a logged model's id), so
# it differs between registration and load; MLflow 3.17 never reads it. The only file the tree digest leaves out.
MLFLOW_DOWNLOAD_META = "registered_model_meta"
DEFAULT_EXPERIMENT = "fraud-detector"

_state = {"tracking_uri": None, "registry_uri": None}
_VERIFIED: set = set()  # SHA-256 of bundles load_bundle verified and is loading via pyfunc right now


# -- pyfunc wrapper --------------------------------------------------------------------------------
try:  # mlflow is a dependency; the import is here so that the class pickles by reference
    import mlflow.pyfunc as _pyfunc

    _PythonModel = _pyfunc.PythonModel
except Exception:  # pragma: no cover - mlflow missing
    _PythonModel = object

HISTORY_MODES = ("warm", "fresh")


class BundleModel(_PythonModel):
    """pyfunc wrapper: ``predict`` scores canonical rows after their history from the archive (module doc)."""

    def __init__(self, bundle=None, archive: str | None = None, history: str = "warm"):
        self.bundle, self.archive, self.history = bundle, archive, history
        self._cache: tuple | None = None  # (archive files + cutoff, state after the history): repeated requests

    def load_context(self, context):
        """Unpickles the bundle only once verified: its SHA-256 is one that ``load_bundle`` just checked (held in
        this process's memory), or, served by MLflow (``mlflow models serve``), the one the tracking store
        records for the model's run (and its HMAC with ``FRAUD_BUNDLE_KEY``); refuses otherwise."""
        from fraud.config import Settings

        path = Path(context.artifacts["bundle"])
        data = path.read_bytes()
        if _sha256(data) not in _VERIFIED:
            _verify_served_bundle(path, data, Settings.from_env().bundle_key)
        self.bundle = _unpickle(data, str(path))
        cfg = dict(context.model_config or {})
        self.archive = cfg.get("archive") or Settings.from_env().archive or self.archive
        self.history = cfg.get("history") or self.history
        if self.history not in HISTORY_MODES:
            raise RegistryError(f"model config history={self.history!r}: not one of {', '.join(HISTORY_MODES)}")
        self._cache = None

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from fraud.errors import ValidationError
        from fraud.schema import validate_frame

        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        rep = validate_frame(model_input, source="pyfunc input")
        if not rep.ok:
            raise ValidationError(f"{rep.n_rejected} invalid row(s) in pyfunc input: "
                                  + "; ".join(rep.messages(limit=5)), rep.problems)
        rows = rep.valid
        if not len(rows):
            return self.bundle.score_frame(rows)
        return self.bundle.score_frame(rows, state=self._history_state(rows))

    def _history_state(self, rows: pd.DataFrame):
        """The online state after the archive's events before ``rows`` (a copy: requests do not leak into each
        other). Cached per (archive files, first row)."""
        import copy

        first = rows["timestamp"].min()
        files = _archive_files(self.archive) if self.archive else ()
        key = (files, first, frozenset(rows["tx_id"]) if files else None)
        if self._cache is None or self._cache[0] != key:
            base = self.bundle.warm_state() if self.history == "warm" else self.bundle.new_state()
            hist = _history_rows(self.archive, first, set(rows["tx_id"]), self._cutoff()) if files else None
            if hist is not None and len(hist):
                self.bundle.score_frame(hist, state=base)
            self._cache = (key, base)
        return copy.deepcopy(self._cache[1])

    def _cutoff(self):
        """Archive events before this are in the warm state already (None: replay them all)."""
        until = self.bundle.config.get("train_until") if self.history == "warm" else None
        if until is None:
            return None
        return utc_timestamp(until, "bundle config train_until")


def _archive_files(archive: str) -> tuple:
    """(path, size, mtime) of the archive's Parquet files: changes when the scorer writes."""
    root = Path(archive)
    if not root.is_dir():
        raise RegistryError(f"model config archive={archive!r} (or FRAUD_ARCHIVE): folder {str(root.resolve())!r} "
                            "does not exist")
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*.parquet")))


def _history_rows(archive: str, before, exclude: set, since=None) -> pd.DataFrame:
    """The archive's events (canonical, time order) before ``before`` and at or after ``since``, minus
    ``exclude``."""
    from fraud.training import read_archive

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = read_archive(archive)
    keep = (hist["timestamp"] < before) & ~hist["tx_id"].isin(exclude)
    if since is not None:
        keep &= hist["timestamp"] >= since
    return hist[keep].reset_index(drop=True)


def _verify_served_bundle(path: Path, data: bytes, key) -> None:
    """A bundle loaded by MLflow itself (not through load_bundle): check it against its run's tags in the
    tracking store (``MLFLOW_TRACKING_URI``); the run is the one the model folder's MLmodel names. This guards
    bundle.pkl only: MLflow has already followed MLmodel, imported code/ and unpickled python_model.pkl (README)."""
    import yaml

    mlmodel = path.parent.parent / "MLmodel"
    run_id = yaml.safe_load(mlmodel.read_text()).get("run_id") if mlmodel.exists() else None
    if not run_id:
        raise RegistryError(f"bundle {str(path)!r} (sha256 {_sha256(data)}) has no run to verify it against "
                            f"({str(mlmodel)!r} names none): load it with fraud.registry.load_bundle(uri, "
                            "via='pyfunc') or serve a registered model")
    tags = _trusted_tags(None, None, run_id)
    _check_digest(f"runs:/{run_id}/model", BUNDLE_ARTIFACT, tags.get(TAG_SHA256), _sha256(data))
    if key:
        _check_digest(f"runs:/{run_id}/model", BUNDLE_ARTIFACT, tags.get(TAG_HMAC), bundle_hmac(data, key),
                      "HMAC-SHA256 (FRAUD_BUNDLE_KEY)")


# -- verification ----------------------------------------------------------------------------------
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bundle_hmac(data: bytes, key: str | bytes) -> str:
    """Hex HMAC-SHA256 of ``data`` with ``key`` (``FRAUD_BUNDLE_KEY``)."""
    return hmac.new(key.encode("utf-8") if isinstance(key, str) else key, data, hashlib.sha256).hexdigest()


_REREGISTER = "re-register the model with `fraud train` / `fraud retrain` (the registry then records its digest)"


def _check_digest(model_uri: str, what: str, expected: str | None, actual: str, kind: str = "sha256") -> None:
    if not expected:
        raise RegistryError(f"model {model_uri!r}: no registered {kind} of {what} (registered by an earlier version "
                            f"or without it): not loaded; expected: none recorded, actual {kind} {actual}; "
                            f"{_REREGISTER}")
    if not hmac.compare_digest(str(expected), actual):
        raise RegistryError(f"model {model_uri!r}: {what} {kind} {actual} does not match the registered {expected} "
                            f"(the artifact changed after registration): not loaded; {_REREGISTER}")


def _verified_bundle_bytes(model_uri: str, d: Path, tags: dict | None, key, trust_local: bool) -> bytes:
    """The bytes of ``d/artifacts/bundle.pkl`` once verified: against the registry ``tags`` (a registered model or
    run), else against the folder's HMAC file with ``key``, else only with ``trust_local``."""
    pkl = d / "artifacts" / BUNDLE_ARTIFACT
    if not pkl.exists():
        raise RegistryError(f"model {model_uri!r} has no {BUNDLE_ARTIFACT} artifact (not a fraud bundle)")
    data = pkl.read_bytes()
    if tags is not None:
        _check_digest(model_uri, BUNDLE_ARTIFACT, tags.get(TAG_SHA256), _sha256(data))
        if key:
            _check_digest(model_uri, BUNDLE_ARTIFACT, tags.get(TAG_HMAC), bundle_hmac(data, key),
                          "HMAC-SHA256 (FRAUD_BUNDLE_KEY)")
        return data
    mac = d / "artifacts" / HMAC_ARTIFACT
    if key and mac.exists():
        _check_digest(model_uri, BUNDLE_ARTIFACT, mac.read_text().strip(), bundle_hmac(data, key),
                      "HMAC-SHA256 (FRAUD_BUNDLE_KEY)")
        return data
    if trust_local:
        return data
    raise RegistryError(f"model folder {model_uri!r} is not in the registry and its {BUNDLE_ARTIFACT} cannot be "
                        f"verified ({'no ' + HMAC_ARTIFACT + ' in it' if key else 'no FRAUD_BUNDLE_KEY given'}): "
                        "not loaded; load it from the registry (models:/NAME@ALIAS), set FRAUD_BUNDLE_KEY to the key "
                        "it was registered with, or pass --trust-local (trust_local=True) for a folder you built")


def _tree_sha256(model_uri: str, d: Path) -> str:
    """SHA-256 over the sorted lines "relative/posix/path\\0<sha256 of the file>\\n" of every file under the model
    folder ``d`` but MLflow's own ``registered_model_meta`` at its top; a link in it is refused."""
    lines = []
    for p in d.rglob("*"):
        rel = p.relative_to(d).as_posix()
        if p.is_symlink():
            raise RegistryError(f"model {model_uri!r}: {rel!r} in its folder is a link (what it points to is "
                                "not covered by the digest): not loaded")
        if p.is_file() and rel != MLFLOW_DOWNLOAD_META:
            lines.append(f"{rel}\0{_sha256(p.read_bytes())}\n")
    return _sha256("".join(sorted(lines)).encode("utf-8", "surrogateescape"))


def _check_model_tree(model_uri: str, d: Path, tags: dict | None, trust_local: bool) -> None:
    """Refuse to let ``mlflow.pyfunc.load_model`` read an unverified model folder (via="pyfunc": it follows MLmodel,
    imports code/ and unpickles python_model.pkl); a local folder only with ``trust_local``."""
    if tags is None:
        if not trust_local:
            raise RegistryError(f"model folder {model_uri!r}: via='pyfunc' runs its MLmodel, code/ and "
                                "python_model.pkl, which only the registry can vouch for: load it via='artifact', "
                                "or pass trust_local=True")
        return
    _check_digest(model_uri, MODEL_TREE, tags.get(TAG_MODEL_TREE), _tree_sha256(model_uri, d))


def _trusted_tags(name, version, run_id) -> dict | None:
    """The digests the tracking database holds for a model version or a run (None: neither, a local folder)."""
    if name is not None:
        return dict(_wrap(f"reading models:/{name}/{version}", _client().get_model_version, name, version).tags)
    if run_id is not None:
        return dict(_wrap(f"reading run {run_id}", _client().get_run, run_id).data.tags)
    return None


def _unpickle(data: bytes, model_uri: str):
    """The bundle in verified ``data``, refused unless it is of the current bundle format."""
    try:
        bundle = pickle.loads(data)
    except (AttributeError, ImportError, TypeError) as e:  # classes renamed or removed since it was pickled
        raise RegistryError(_format_message(model_uri, f"unreadable ({type(e).__name__}: {e})")) from e
    _check_format(bundle, model_uri)
    return bundle


def _check_format(bundle, model_uri: str) -> None:
    """Refuse a bundle pickled with another bundle format than ``fraud.bundle.BUNDLE_FORMAT``."""
    from fraud.bundle import BUNDLE_FORMAT

    found = getattr(bundle, "format_version", None)
    if found != BUNDLE_FORMAT:
        raise RegistryError(_format_message(model_uri, "none recorded" if found is None else found))


def _format_message(model_uri: str, found) -> str:
    from fraud.bundle import BUNDLE_FORMAT

    return (f"model {model_uri!r}: bundle format {found}, expected format {BUNDLE_FORMAT} (this version of "
            "fraud-graph reads no other): not loaded; retrain with `fraud retrain` (or `fraud train`) to register "
            "a bundle of the current format")


# -- configuration ---------------------------------------------------------------------------------
def _check_reachable(uri: str) -> None:
    """Cheap reachability probe (no MLflow retries): sqlite parent dir exists; http host:port answers."""
    p = urlparse(uri)
    scheme = p.scheme.lower()
    if scheme.startswith("sqlite"):
        path = uri.split(":///", 1)[1] if ":///" in uri else ""
        if path and path != ":memory:":
            parent = Path(path).expanduser().parent
            if not parent.is_dir():
                raise RegistryError(f"MLflow tracking store {uri!r} is unreachable: folder {str(parent)!r} does not exist")
    elif scheme in ("http", "https"):
        host = p.hostname or "localhost"
        port = p.port or (443 if scheme == "https" else 80)
        try:
            with socket.create_connection((host, port), timeout=3):
                pass
        except OSError as e:
            raise RegistryError(f"MLflow tracking server {uri!r} is unreachable: {e}") from None
    elif scheme in ("", "file"):
        path = p.path if scheme == "file" else uri
        parent = Path(path).expanduser().parent
        if not parent.is_dir():
            raise RegistryError(f"MLflow tracking store {uri!r} is unreachable: folder {str(parent)!r} does not exist")


def configure(tracking_uri: str | None = None, registry_uri: str | None = None) -> str:
    """Point MLflow at ``tracking_uri`` (default: ``fraud.config.Settings().tracking_uri``)."""
    import mlflow

    if tracking_uri is None:
        from fraud.config import Settings

        tracking_uri = Settings().tracking_uri
    _check_reachable(tracking_uri)
    _quiet_loggers()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri or tracking_uri)
    _state["tracking_uri"] = tracking_uri
    _state["registry_uri"] = registry_uri or tracking_uri
    return tracking_uri


def _uri() -> str:
    import mlflow

    return _state["tracking_uri"] or mlflow.get_tracking_uri()


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=_state["tracking_uri"], registry_uri=_state["registry_uri"])


def _wrap(what: str, fn, *a, **kw):
    """Run an MLflow call; turn store failures into RegistryError naming the URI."""
    from mlflow.exceptions import MlflowException

    try:
        return fn(*a, **kw)
    except RegistryError:
        raise
    except MlflowException as e:
        msg = str(e).splitlines()[0][:300]
        raise RegistryError(f"{what} failed on MLflow store {_uri()!r}: {msg}") from e
    except OSError as e:
        raise RegistryError(f"{what} failed on MLflow store {_uri()!r}: {e}") from e
    except Exception as e:  # SQLAlchemy errors from a broken sqlite store
        if type(e).__module__.startswith("sqlalchemy"):
            raise RegistryError(f"{what} failed on MLflow store {_uri()!r}: {e.__class__.__name__}: {e}") from e
        raise


def ensure_experiment(name: str = DEFAULT_EXPERIMENT, artifact_root: str | None = None) -> str:
    """Experiment id for ``name``, created with its artifacts under ``artifact_root`` (never ./mlruns)."""
    import mlflow

    def go():
        exp = mlflow.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        loc = None
        if artifact_root:
            root = Path(artifact_root).expanduser().resolve() if "://" not in artifact_root else None
            if root is not None:
                root.mkdir(parents=True, exist_ok=True)
                loc = (root / re.sub(r"[^A-Za-z0-9_.-]", "_", name)).as_uri()
            else:
                loc = artifact_root.rstrip("/") + "/" + name
        return mlflow.create_experiment(name, artifact_location=loc)

    return _wrap(f"creating experiment {name!r}", go)


TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CODE_PACKAGES = ("fraud", "models", "streaming")  # the project's source, logged as the model's code paths


def _pip_requirements() -> list[str]:
    """The project's runtime dependencies pinned to the installed versions (``fraud-graph`` itself travels as
    code paths); CPU torch's index first when torch is a CPU build."""
    from importlib import metadata

    try:
        reqs = [r for r in metadata.requires("fraud-graph") or [] if "extra ==" not in r]
    except metadata.PackageNotFoundError:
        reqs = []
    names = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower() for r in reqs} | {"mlflow", "alembic"}
    out = []
    for pkg in sorted(names):
        try:
            out.append(f"{pkg}=={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            out.append(pkg)
    if any(r.startswith("torch==") and "+cpu" in r for r in out):
        out.insert(0, f"--extra-index-url {TORCH_CPU_INDEX}")
    return out


def _code_paths() -> list[str]:
    import importlib

    return [str(Path(importlib.import_module(p).__file__).parent) for p in CODE_PACKAGES]


def _input_example(bundle) -> pd.DataFrame:
    """Two canonical rows (the columns the bundle reads) for the signature and the model's input example."""
    t = utc_timestamp(bundle.config.get("train_until") or "2024-01-01", "bundle config train_until")
    values = {"tx_id": ["ex-1", "ex-2"], "timestamp": [t, t + pd.Timedelta(minutes=5)],
              "customer_id": ["c-1", "c-1"], "terminal_id": ["t-1", "t-2"], "amount": [42.5, 310.0]}
    return pd.DataFrame({c: values.get(c, ["", ""]) for c in bundle.required_columns})


def _signature(bundle, example: pd.DataFrame):
    from mlflow.models import infer_signature

    out = bundle.score_frame(example, state=bundle.new_state()).copy()
    out["reasons"] = out["reasons"].map(lambda r: [str(x) for x in r])
    ex = example.assign(timestamp=example["timestamp"].dt.tz_localize(None))
    return infer_signature(ex, out)


def log_and_register(bundle, name: str = "fraud-detector", metrics: dict | None = None, params: dict | None = None,
                     artifacts: dict | None = None, tags: dict | None = None, experiment: str | None = None,
                     artifact_root: str | None = None, champion_if_first: bool = True, run_name: str | None = None,
                     figures: dict | None = None, key: str | bytes | None = None) -> str:
    """Log a training run (params, metrics, files) and register ``bundle`` as ONE pyfunc model version.

    ``artifacts``: {destination "folder/file.ext" in the run: local file path} (the file keeps its own
    name; the key's folder part is where it goes) logged to the run; ``figures``:
    {file name: matplotlib figure}. The first version of ``name`` gets alias ``champion``.
    Returns the registered version string; the bundle's ``version`` is set to it and the run id is in
    ``bundle.config["run_id"]``. The SHA-256 of ``bundle.pkl`` (and its HMAC-SHA256 with ``key``, when given) and
    that of the whole model folder as MLflow downloads it become tags of the version and the run (what
    ``load_bundle`` verifies).
    """
    import mlflow

    exp_id = ensure_experiment(experiment or name, artifact_root)

    def go():
        client = _client()
        with mlflow.start_run(experiment_id=exp_id, run_name=run_name) as run:
            if params:
                mlflow.log_params({mlflow_key(k): _param(v) for k, v in params.items()})
            if metrics:
                mlflow.log_metrics({mlflow_key(k): float(v) for k, v in metrics.items()
                                    if v is not None and _finite(v)})
            if tags:
                mlflow.set_tags({mlflow_key(k): str(v) for k, v in tags.items()})
            for dest, path in (artifacts or {}).items():
                if path is not None and Path(path).exists():
                    sub = str(Path(dest).parent) if dest else "."
                    mlflow.log_artifact(str(path), artifact_path=None if sub == "." else sub)
            for fname, fig in (figures or {}).items():
                mlflow.log_figure(fig, fname)
            bundle.config["run_id"] = run.info.run_id
            with tempfile.TemporaryDirectory() as tmp:
                pkl = Path(tmp) / BUNDLE_ARTIFACT
                data = pickle.dumps(bundle, protocol=5)
                pkl.write_bytes(data)
                digests = {TAG_SHA256: _sha256(data)}
                arts = {"bundle": str(pkl)}
                if key:
                    digests[TAG_HMAC] = bundle_hmac(data, key)
                    (Path(tmp) / HMAC_ARTIFACT).write_text(digests[TAG_HMAC] + "\n")
                    arts["bundle_hmac"] = str(Path(tmp) / HMAC_ARTIFACT)
                example = _input_example(bundle)
                _VERIFIED.add(digests[TAG_SHA256])  # MLflow loads it to check the input example: ours, just made
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        info = mlflow.pyfunc.log_model(
                            name="model", python_model=BundleModel(), artifacts=arts,
                            pip_requirements=_pip_requirements(), code_paths=_code_paths(),
                            signature=_signature(bundle, example),
                            input_example=example.assign(timestamp=example["timestamp"].dt.tz_localize(None)),
                            model_config={"archive": None, "history": "warm"},
                            registered_model_name=name, await_registration_for=60,
                        )
                finally:
                    _VERIFIED.discard(digests[TAG_SHA256])
                m = Path(mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=tmp + "/m"))
                digests[TAG_MODEL_TREE] = _tree_sha256(info.model_uri, m)
            mlflow.set_tags(digests)
            version = str(info.registered_model_version)
            mv_tags = {"run_id": run.info.run_id, **{mlflow_key(k): str(v) for k, v in (tags or {}).items()},
                       **digests}
            for k, v in mv_tags.items():
                client.set_model_version_tag(name, version, k, v)
            if champion_if_first:
                try:
                    client.get_model_version_by_alias(name, CHAMPION)
                except Exception:
                    client.set_registered_model_alias(name, CHAMPION, version)
                    mlflow.set_tag("alias", CHAMPION)
        bundle.version = version
        return version

    return _wrap(f"registering model {name!r}", go)


def mlflow_key(k: str) -> str:
    """A metric/param/tag name MLflow accepts: ``cp@100`` -> ``cp_at_100``."""
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", str(k).replace("@", "_at_"))


def _param(v) -> str:
    s = str(v)
    return s if len(s) <= 6000 else s[:5997] + "..."


def _finite(v) -> bool:
    try:
        import math

        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


_MODELS_RE = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))$")


def parse_model_uri(model_uri: str) -> tuple[str | None, str | None, str | None]:
    """``models:/NAME@alias`` -> (name, alias, None); ``models:/NAME/3`` -> (name, None, "3"); else Nones."""
    m = _MODELS_RE.match(model_uri or "")
    if not m:
        return None, None, None
    return m.group("name"), m.group("alias"), m.group("version")


def load_bundle(model_uri: str, tracking_uri: str | None = None, via: str = "artifact",
                key: str | bytes | None = None, trust_local: bool = False):
    """Load the ScoringBundle of ``model_uri`` (``models:/NAME@alias``, ``models:/NAME/VERSION``,
    ``runs:/RUN_ID/model`` or a local model folder). Sets ``bundle.version`` (registry version or None).

    Nothing is unpickled before it is verified (module doc): a registered version or run against the SHA-256 its
    tags record (and the HMAC-SHA256 with ``key``, ``FRAUD_BUNDLE_KEY``, when given); a local folder against its
    ``artifacts/bundle.pkl.hmac`` with ``key``, or not at all with ``trust_local=True`` (a folder you built).
    ``via="artifact"`` (default, faster) unpickles ``artifacts/bundle.pkl`` from the model folder;
    ``via="pyfunc"`` goes through ``mlflow.pyfunc.load_model`` and unwraps the python model, once the whole
    downloaded model folder matches its registered digest (a local folder: only with ``trust_local=True``).
    """
    if tracking_uri is not None or _state["tracking_uri"] is None:
        configure(tracking_uri)
    name, alias, version = parse_model_uri(model_uri)
    if name is not None and alias is not None:
        version = resolve_alias(name, alias)
    if model_uri.startswith("models:/") and name is None:
        raise RegistryError(f"model URI {model_uri!r} is not of the form models:/NAME@ALIAS or models:/NAME/VERSION")
    if name is not None:
        model_uri = f"models:/{name}/{version}"
    run = re.match(r"^runs:/([^/]+)/", model_uri)
    tags = _trusted_tags(name, version, run.group(1) if run else None)

    def go():
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(model_uri) if Path(model_uri).is_dir() else Path(mlflow_download(model_uri, tmp))
            data = _verified_bundle_bytes(model_uri, d, tags, key, trust_local)
            if via != "pyfunc":
                return _unpickle(data, model_uri)
            import mlflow.pyfunc

            _check_model_tree(model_uri, d, tags, trust_local)
            digest = _sha256(data)
            _VERIFIED.add(digest)
            try:
                return mlflow.pyfunc.load_model(str(d)).unwrap_python_model().bundle
            finally:
                _VERIFIED.discard(digest)

    b = _wrap(f"loading model {model_uri!r}", go)
    _check_format(b, model_uri)
    b.version = version
    return b


def mlflow_download(model_uri: str, dst: str) -> str:
    """A private local copy of the model folder ``model_uri``."""
    import mlflow

    return mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst)


def resolve_alias(name: str, alias: str = CHAMPION, tracking_uri: str | None = None) -> str:
    """Version string that ``name@alias`` points to (one registry query), in the configured store or in
    ``tracking_uri`` (a client of its own: the process-wide configuration is left as it is)."""
    if tracking_uri is None:
        client = _client()
    else:  # not the configured client too: building it opens (and may create) the default store
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return str(_wrap(f"resolving models:/{name}@{alias}", lambda: client.get_model_version_by_alias(name, alias)).version)


def set_alias(name: str, alias: str, version: str) -> None:
    _wrap(f"setting alias {name}@{alias} -> {version}", _client().set_registered_model_alias, name, alias, str(version))


def model_version_info(name: str, version: str):
    return _wrap(f"reading models:/{name}/{version}", _client().get_model_version, name, str(version))


def set_version_tags(name: str, version: str, tags: dict) -> None:
    client = _client()
    for k, v in tags.items():
        _wrap(f"tagging models:/{name}/{version}", client.set_model_version_tag, name, str(version), mlflow_key(k),
              str(v))


def set_run_tags(run_id: str, tags: dict) -> None:
    client = _client()
    for k, v in tags.items():
        _wrap(f"tagging run {run_id}", client.set_tag, run_id, mlflow_key(k), str(v))


def quiet_mlflow() -> None:
    """Silence MLflow's chatty logging and git probing (called by the CLI)."""
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    _quiet_loggers()


def _quiet_loggers() -> None:
    import logging

    for n in ("mlflow", "alembic", "mlflow.store", "mlflow.tracking"):
        logging.getLogger(n).setLevel(logging.ERROR)
