"""The 40-task synthetic MI benchmark of Czyż et al. 2023 ("Beyond Normal"), RFMI against standard estimators.

Run ``python -m rfmi_core.bench.synthetic --quick`` (CPU) or ``--full`` (all 40 tasks; one GPU). Tasks, ground truth and
the KSG / CCA / MINE / InfoNCE / NWJ / Donsker–Varadhan baselines come from ``benchmark-mi`` (``import bmi``, the
``bench`` extra, its own environment); two Gaussian tasks and DoE are native, so a machine without ``bmi`` still runs.
"""
