"""Serving of exported jaxctr models: artifact loading, request encoding, batching, HTTP.

Everything under this package imports only jax and numpy (and Starlette/uvicorn for the
HTTP server), never the training stack (flax, optax, orbax, tensorflow-datasets), so a
serving process stays small and starts fast. `jaxctr.export` writes the artifacts.
The exception is `savedmodel_tf`, imported only by the optional TensorFlow SavedModel
conversion (`savedmodel`, ``python -m jaxctr.export_tf``); nothing the server loads imports it.
"""
