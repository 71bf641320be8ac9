"""Serving: every registered model behind one FastAPI + onnxruntime process (`python -m serving`).

Imports only inference dependencies (onnxruntime, numpy, fastapi, pydantic, ...): never pipeline code,
scikit-learn, xgboost, torch or transformers; MLflow only when models come from the registry.
"""
