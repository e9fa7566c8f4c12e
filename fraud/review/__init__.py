"""Analyst review of flagged clusters: clustering (``clusters``), the web app (``app``) and the
static report (``report``). Heavy imports (FastAPI, matplotlib, scikit-learn) happen in the
submodules, so importing this package is cheap."""
