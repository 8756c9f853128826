"""Model architectures, looked up by name through the registry."""

from unlearnkit.models import external, resnet, small_cnn  # noqa: F401  (registers the builders)
from unlearnkit.models.registry import create_model, list_models, model_kwargs, register_model

__all__ = ["create_model", "list_models", "model_kwargs", "register_model"]
