"""MLflow tracking and model registry for the scoring bundle.

The whole :class:`fraud.bundle.ScoringBundle` is ONE MLflow pyfunc model version:

* the bundle is pickled (protocol 5; torch modules inside featurizers pickle with it) into the
  model's artifact ``artifacts/bundle.pkl``;
* the pyfunc ``python_model`` is a :class:`BundleModel`; ``load_context`` unpickles the bundle, so
  after ``mlflow.pyfunc.load_model(uri)`` the bundle is ``model.unwrap_python_model().bundle``;
* :meth:`BundleModel.predict` semantics: ``model_input`` is a DataFrame of canonical rows (any order;
  they are validated with :func:`fraud.schema.validate_frame` and sorted by time); they are scored as a
  replay from a FRESH state (no history before the first row), so pass the history you want the features
  to see. Returns DataFrame[tx_id, score, is_alert, reasons] for the valid rows, in time order; invalid
  rows raise :class:`fraud.errors.ValidationError` listing them.

Loading (``load_bundle``) reads ``bundle.pkl`` directly from the model's artifacts instead of going
through ``mlflow.pyfunc.load_model`` (which also checks requirements and imports through the pyfunc
flavour): measured by ``fraud bench load`` / the registry test.

Names: models are registered under ``name`` (default ``fraud-detector``); the first version gets the
alias ``champion``. ``resolve_alias`` is a single registry query (hot-reload polling).
An unreachable store raises :class:`fraud.errors.RegistryError` naming the URI.
"""
from __future__ import annotations

import os
import pickle
import re
import socket
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import urlparse

from fraud.errors import RegistryError

CHAMPION = "champion"
BUNDLE_ARTIFACT = "bundle.pkl"
DEFAULT_EXPERIMENT = "fraud-detector"

_state = {"tracking_uri": None, "registry_uri": None}


# -- pyfunc wrapper --------------------------------------------------------------------------------
try:  # mlflow is a dependency; the import is here so that the class pickles by reference
    import mlflow.pyfunc as _pyfunc

    _PythonModel = _pyfunc.PythonModel
except Exception:  # pragma: no cover - mlflow missing
    _PythonModel = object

_hint_warning = warnings.catch_warnings()  # MLflow nags about predict's type hints at class creation
_hint_warning.__enter__()
warnings.simplefilter("ignore", UserWarning)


class BundleModel(_PythonModel):
    """pyfunc wrapper: ``predict`` scores canonical rows from a fresh state (see module doc)."""

    def __init__(self, bundle=None):
        self.bundle = bundle

    def load_context(self, context):
        with open(context.artifacts["bundle"], "rb") as fh:
            self.bundle = pickle.load(fh)

    def predict(self, context, model_input, params=None):
        import pandas as pd

        from fraud.errors import ValidationError
        from fraud.schema import validate_frame

        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        rep = validate_frame(model_input, source="pyfunc input")
        if not rep.ok:
            raise ValidationError(f"{rep.n_rejected} invalid row(s) in pyfunc input: "
                                  + "; ".join(rep.messages(limit=5)), rep.problems)
        return self.bundle.score_frame(rep.valid)


_hint_warning.__exit__(None, None, None)


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


PIP_REQUIREMENTS = ["fraud-graph", "mlflow", "pandas", "numpy", "scikit-learn", "pyod", "torch", "lightgbm"]


def _pip_requirements() -> list[str]:
    from importlib import metadata

    out = []
    for pkg in PIP_REQUIREMENTS:
        try:
            out.append(f"{pkg}=={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            out.append(pkg)
    return out


def log_and_register(bundle, name: str = "fraud-detector", metrics: dict | None = None, params: dict | None = None,
                     artifacts: dict | None = None, tags: dict | None = None, experiment: str | None = None,
                     artifact_root: str | None = None, champion_if_first: bool = True, run_name: str | None = None,
                     figures: dict | None = None) -> str:
    """Log a training run (params, metrics, files) and register ``bundle`` as ONE pyfunc model version.

    ``artifacts``: {destination "folder/file.ext" in the run: local file path} (the file keeps its own
    name; the key's folder part is where it goes) logged to the run; ``figures``:
    {file name: matplotlib figure}. The first version of ``name`` gets alias ``champion``.
    Returns the registered version string; the bundle's ``version`` is set to it and the run id is in
    ``bundle.config["run_id"]``.
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
                with open(pkl, "wb") as fh:
                    pickle.dump(bundle, fh, protocol=5)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    info = mlflow.pyfunc.log_model(
                        name="model", python_model=BundleModel(), artifacts={"bundle": str(pkl)},
                        pip_requirements=_pip_requirements(), registered_model_name=name,
                        await_registration_for=60,
                    )
            version = str(info.registered_model_version)
            mv_tags = {"run_id": run.info.run_id, **{mlflow_key(k): str(v) for k, v in (tags or {}).items()}}
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


def _local_model_dir(model_uri: str) -> Path:
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))


def load_bundle(model_uri: str, tracking_uri: str | None = None, via: str = "artifact"):
    """Load the ScoringBundle of ``model_uri`` (``models:/NAME@alias``, ``models:/NAME/VERSION``,
    ``runs:/RUN_ID/model`` or a local model folder). Sets ``bundle.version`` (registry version or None).

    ``via="artifact"`` (default, faster) unpickles ``artifacts/bundle.pkl`` from the model folder;
    ``via="pyfunc"`` goes through ``mlflow.pyfunc.load_model`` and unwraps the python model.
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
        _wrap(f"looking up {model_uri!r}", _client().get_model_version, name, version)

    def go():
        if via == "pyfunc":
            import mlflow.pyfunc

            b = mlflow.pyfunc.load_model(model_uri).unwrap_python_model().bundle
        else:
            d = Path(model_uri) if Path(model_uri).is_dir() else _local_model_dir(model_uri)
            pkl = d / "artifacts" / BUNDLE_ARTIFACT
            if not pkl.exists():
                raise RegistryError(f"model {model_uri!r} has no {BUNDLE_ARTIFACT} artifact (not a fraud bundle)")
            with open(pkl, "rb") as fh:
                b = pickle.load(fh)
        return b

    b = _wrap(f"loading model {model_uri!r}", go)
    b.version = version
    return b


def resolve_alias(name: str, alias: str = CHAMPION) -> str:
    """Version string that ``name@alias`` points to (one registry query)."""
    return str(_wrap(f"resolving models:/{name}@{alias}", lambda: _client().get_model_version_by_alias(name, alias)).version)


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


def timed_load(model_uri: str, via: str) -> float:
    """Seconds to load ``model_uri`` via ``artifact`` or ``pyfunc`` (for the load-time measurement)."""
    t0 = time.perf_counter()
    load_bundle(model_uri, via=via)
    return time.perf_counter() - t0


def quiet_mlflow() -> None:
    """Silence MLflow's chatty logging and git probing (called by the CLI)."""
    import logging

    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    _quiet_loggers()


def _quiet_loggers() -> None:
    import logging

    for n in ("mlflow", "alembic", "mlflow.store", "mlflow.tracking"):
        logging.getLogger(n).setLevel(logging.ERROR)
